"""The client: ``Shroud(base_url=None, token=None)`` and its resources."""

from __future__ import annotations

import json
import os
import ssl
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

from ._transport import LineStream, Transport, quote_segment
from .errors import NotFoundError, error_for_status
from .sandboxes import SecretGrants, Sandboxes, grants
from .types import FetchResponse, Health, Rendered, Run, SecretMetadata, SecretRef, SetResult

__all__ = [
    "Shroud",
    "Secrets",
    "Vars",
    "References",
    "Deployments",
    "Agents",
    "Runs",
    "DEFAULT_URL",
    "PURPOSES",
    "bearer_auth",
    "basic_auth",
    "aws_v4_auth",
]

#: Where ``shroud serve`` listens by default.
DEFAULT_URL = "http://127.0.0.1:7878"
#: The purposes a secret may have (``Other`` when none is given).
PURPOSES = ("APIKey", "SSHKey", "UsernamePassword", "Other")

#: One secret of a bulk set: ``{"name", "secret" (or "value"), "description"?, "purpose"?}`` or ``(name, value)``.
SecretItem = Union[Mapping[str, Any], Tuple[str, str]]


def _text(value: Any, what: str) -> str:
    # The message names the secret and the type, never the value.
    if isinstance(value, str):
        return value
    if isinstance(value, (bytes, bytearray)):
        try:
            return bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            raise ValueError(f"{what}: the value is not UTF-8 text") from None
    raise TypeError(f"{what}: the value must be a str, not {type(value).__name__}")


def _secret_item(item: SecretItem) -> Dict[str, Any]:
    if isinstance(item, tuple):
        pair_name, pair_value = item
        return {"name": pair_name, "secret": _text(pair_value, f"secret {pair_name!r}")}
    if not isinstance(item, Mapping):
        raise TypeError("each secret is a mapping {'name', 'secret'} or a (name, value) pair")
    out: Dict[str, Any] = {}
    name = item.get("name")
    if not isinstance(name, str):
        raise TypeError("each secret needs a 'name' string")
    out["name"] = name
    out["secret"] = _text(item["secret"] if "secret" in item else item.get("value"), f"secret {name!r}")
    for key in ("description", "purpose"):
        if item.get(key) is not None:
            out[key] = item[key]
    return out


def bearer_auth(token: str) -> Dict[str, str]:
    """``auth`` of :meth:`Shroud.fetch`: ``Authorization: Bearer <token>`` (a ``$secret:`` reference, typically)."""
    return {"type": "bearer", "token": token}


def basic_auth(username: str, password: str) -> Dict[str, str]:
    """``auth`` of :meth:`Shroud.fetch`: HTTP basic authentication."""
    return {"type": "basic", "username": username, "password": password}


def aws_v4_auth(
    access_key_id: str,
    secret_access_key: str,
    region: str,
    service: str,
    session_token: Optional[str] = None,
) -> Dict[str, str]:
    """``auth`` of :meth:`Shroud.fetch`: AWS Signature Version 4 (each field possibly a reference)."""
    auth = {
        "type": "awsv4",
        "access_key_id": access_key_id,
        "secret_access_key": secret_access_key,
        "region": region,
        "service": service,
    }
    if session_token is not None:
        auth["session_token"] = session_token
    return auth


class _Resource:
    def __init__(self, client: "Shroud") -> None:
        self._client = client
        self._t = client._transport

    def _vault(self, vault: Optional[str]) -> str:
        return vault or self._client.vault


class Secrets(_Resource):
    """``rt.secrets``: the vault's secrets (values go in, only metadata and references come out)."""

    def set(
        self,
        name: str,
        value: str,
        vault: Optional[str] = None,
        description: Optional[str] = None,
        purpose: Optional[str] = None,
    ) -> int:
        """Sets one secret; returns its new version. ``purpose``: one of :data:`PURPOSES`."""
        item: Dict[str, Any] = {"name": name, "secret": _text(value, f"secret {name!r}")}
        if description is not None:
            item["description"] = description
        if purpose is not None:
            item["purpose"] = purpose
        result = self._set([item], vault)
        return int(result.versions.get(name, 0))

    def set_many(
        self,
        secrets: Union[Mapping[str, str], Iterable[SecretItem]],
        vault: Optional[str] = None,
    ) -> SetResult:
        """Sets several secrets (not atomic): ``{name: value}`` or a list of items.

        When some fail, the others are set and :class:`~shroud.PartialSetError`
        is raised, with ``errors`` (each failed name and why), ``set_secrets``
        and ``versions``.
        """
        if isinstance(secrets, Mapping):
            items = [{"name": n, "secret": _text(v, f"secret {n!r}")} for n, v in secrets.items()]
        else:
            items = [_secret_item(i) for i in secrets]
        return self._set(items, vault)

    def _set(self, items: List[Dict[str, Any]], vault: Optional[str]) -> SetResult:
        _, data = self._t.request(
            "POST", "/api/vaults/secrets", {"vault_name": self._vault(vault), "secrets": items}
        )
        data = data or {}
        return SetResult(set_secrets=list(data.get("set_secrets") or []), versions=dict(data.get("versions") or {}))

    def _path(self, name: str, vault: Optional[str]) -> str:
        return f"/api/vaults/{quote_segment(self._vault(vault))}/secrets/{quote_segment(name)}"

    def get(self, name: str, vault: Optional[str] = None) -> SecretMetadata:
        """A secret's metadata (version, description, purpose, times); never its value."""
        _, data = self._t.request("GET", self._path(name, vault))
        return SecretMetadata.from_json(data or {})

    def exists(self, name: str, vault: Optional[str] = None) -> bool:
        """True when the secret exists (``HEAD``); other failures raise."""
        try:
            self._t.request("HEAD", self._path(name, vault))
        except NotFoundError:
            return False
        return True

    def list(self, vault: Optional[str] = None) -> List[SecretMetadata]:
        """The vault's secrets' metadata, sorted by name."""
        _, data = self._t.request("GET", f"/api/vaults/{quote_segment(self._vault(vault))}/secrets")
        return [SecretMetadata.from_json(s) for s in (data or {}).get("secrets") or []]

    def delete(self, name: str, vault: Optional[str] = None) -> None:
        """Deletes the secret (:class:`~shroud.NotFoundError` when there is none)."""
        self._t.request("DELETE", self._path(name, vault))

    def rendered(
        self,
        vault: Optional[str] = None,
        mode: Optional[str] = None,
        names: Optional[Sequence[str]] = None,
        environment: Optional[str] = None,
    ) -> Rendered:
        """The vault's secrets rendered: ``mode="PreviewOnly"`` (the server's default) or ``"Full"``.

        ``names`` keeps only those secrets; ``environment`` is the server's
        alias of the vault. Every value read is audited.
        """
        if names is not None and isinstance(names, str):
            names = [names]
        query: Dict[str, Any] = {
            "mode": mode,
            "secret-name-filter": ",".join(names) if names is not None else None,
            "environment": environment,
        }
        path_vault = vault or environment or self._client.vault
        _, data = self._t.request("GET", f"/api/vaults/{quote_segment(path_vault)}/rendered", query=query)
        return Rendered.from_json(data or {})


class Vars(_Resource):
    """``rt.vars``: non-secret values of a vault (never masked)."""

    def set(self, name: str, value: str, vault: Optional[str] = None) -> None:
        self._t.request(
            "POST",
            "/api/vaults/vars",
            {"vault_name": self._vault(vault), "var": {"name": name, "value": str(value)}},
        )


class References(_Resource):
    """``rt.references``: scoped secrets handed out as opaque ``$secret:`` references.

    ``scope`` is ``"workspace"`` (needs a grant on the ``workspace`` vault)
    or ``"user"`` (the token's user's own vault).
    """

    @staticmethod
    def _ref(data: Optional[Mapping[str, Any]]) -> SecretRef:
        data = data or {}
        return SecretRef(data.get("ref", ""), data.get("expires_at"))

    def set(self, name: str, value: Any, scope: str = "workspace", ttl: Optional[int] = None) -> SecretRef:
        """Stores ``value`` (a string as it is, anything else as its compact JSON); a reference to it."""
        body: Dict[str, Any] = {"name": name, "value": value, "scope": scope}
        if ttl is not None:
            body["ttl"] = int(ttl)
        _, data = self._t.request("POST", "/api/secrets/set", body)
        return self._ref(data)

    def get(self, name: str, scope: str = "workspace", ttl: Optional[int] = None) -> SecretRef:
        """A new reference to the secret (valid ``ttl`` seconds, 300 by default); never its value."""
        body: Dict[str, Any] = {"name": name, "scope": scope}
        if ttl is not None:
            body["ttl"] = int(ttl)
        _, data = self._t.request("POST", "/api/secrets/get", body)
        return self._ref(data)

    def delete(self, name: str, scope: str = "workspace") -> None:
        self._t.request("POST", "/api/secrets/delete", {"name": name, "scope": scope})


_CAMEL = {
    "template_slug": "templateSlug",
    "api_slug": "apiSlug",
    "runtime_slug": "runtimeSlug",
    "template": "templateSlug",
    "slug": "apiSlug",
}


class Deployments(_Resource):
    """``rt.deployments``: long-running services and agents under the server's supervisor."""

    def create(self, spec: Optional[Mapping[str, Any]] = None, **fields: Any) -> str:
        """Creates (and starts) a deployment; returns its slug.

        ``spec`` is the API's body: ``{"templateSlug", "apiSlug", "command": [...],
        "secrets"?, "mode"?: "service"|"agent", "vault"?, "env"?, "replicas"?,
        "runtimeSlug"?, "sockets"?}``; keyword arguments are merged in, and
        ``template_slug`` / ``api_slug`` / ``runtime_slug`` (or ``template`` /
        ``slug``) are accepted for the camelCase names.
        """
        body: Dict[str, Any] = {}
        for key, value in list((spec or {}).items()) + list(fields.items()):
            if value is None:
                continue
            body[_CAMEL.get(key, key)] = value
        if "secrets" in body:
            body["secrets"] = grants(body["secrets"])
        if isinstance(body.get("command"), str):
            body["command"] = ["sh", "-c", body["command"]]
        body.setdefault("vault", self._client.vault)
        _, data = self._t.request("POST", "/api/deployments", body)
        return str((data or {}).get("slug", body.get("apiSlug", "")))

    def list(self) -> List[Dict[str, Any]]:
        """Every deployment the token has a grant on: state, instances, restarts, secret versions."""
        _, data = self._t.request("GET", "/api/deployments")
        return list((data or {}).get("deployments") or [])

    def get(self, slug: str) -> Dict[str, Any]:
        """One deployment of :meth:`list` (:class:`~shroud.NotFoundError` when there is none)."""
        for d in self.list():
            if d.get("slug") == slug:
                return d
        raise NotFoundError(f"deployment `{slug}` not found", 404)

    def logs(self, slug: str, follow: bool = False, tail: Optional[int] = None) -> LineStream:
        """The deployment's masked log as JSON lines (dicts); ``follow`` keeps it open for new lines."""
        query = {"follow": True if follow else None, "tail": tail}
        return self._t.stream("GET", f"/api/deployments/{quote_segment(slug)}/logs", query=query)

    def _verb(self, slug: str, verb: str) -> Dict[str, Any]:
        _, data = self._t.request("POST", f"/api/deployments/{quote_segment(slug)}/{verb}")
        return data or {}

    def stop(self, slug: str) -> Dict[str, Any]:
        return self._verb(slug, "stop")

    def start(self, slug: str) -> Dict[str, Any]:
        return self._verb(slug, "start")

    def restart(self, slug: str) -> Dict[str, Any]:
        """Rolls the instances one at a time (the new one up before the old one stops)."""
        return self._verb(slug, "restart")

    def delete(self, slug: str) -> Dict[str, Any]:
        _, data = self._t.request("DELETE", f"/api/deployments/{quote_segment(slug)}")
        return data or {}


class Agents(_Resource):
    """``rt.agents``: runs of ``mode: agent`` deployments."""

    def run(
        self,
        slug: str,
        message: str = "",
        params: Optional[Mapping[str, Any]] = None,
        wait: bool = True,
        timeout_s: Optional[float] = None,
    ) -> Run:
        """Starts a run (the agent reads ``{"run_id", "message", "params"}`` on stdin).

        With ``wait`` (the default) it returns when the run has ended, with
        its status, exit code and masked log; otherwise at once, with only
        ``run_id`` set (see :meth:`Runs.get`).
        """
        body: Dict[str, Any] = {"message": message, "params": dict(params or {})}
        if timeout_s is not None:
            body["timeout_s"] = timeout_s
        query = {"wait": True} if wait else None
        _, data = self._t.request("POST", f"/api/agents/{quote_segment(slug)}/runs", body, query=query)
        return Run.from_json(data or {})

    def runs(self, slug: str) -> List[Run]:
        """The agent's runs, oldest first (without their logs)."""
        _, data = self._t.request("GET", f"/api/agents/{quote_segment(slug)}/runs")
        return [Run.from_json(r) for r in (data or {}).get("runs") or []]


class Runs(_Resource):
    """``rt.runs``: agent runs by id."""

    def get(self, run_id: str) -> Run:
        _, data = self._t.request("GET", f"/api/runs/{quote_segment(run_id)}")
        return Run.from_json(data or {})

    def log(self, run_id: str, follow: bool = False, tail: Optional[int] = None) -> LineStream:
        """The run's masked log as JSON lines; with ``follow``, until its ``{"event": "exit"}`` line."""
        query = {"follow": True if follow else None, "tail": tail}
        return self._t.stream("GET", f"/api/runs/{quote_segment(run_id)}/log", query=query)


class Shroud:
    """A client of ``shroud serve``.

    ``base_url`` defaults to ``$SHROUD_URL``, else ``http://127.0.0.1:7878``
    (``unix:/PATH`` talks to the supervisor's socket); ``token`` to
    ``$SHROUD_TOKEN``; ``vault`` (the default vault of every call) to
    ``$SHROUD_VAULT``, else ``default``. ``timeout`` bounds each read from the
    server in seconds (``None``: no bound, as commands may run long).

    Keep-alive connections are pooled and reused; a client may be shared by
    threads.
    """

    def __init__(
        self,
        base_url: Optional[str] = None,
        token: Optional[str] = None,
        vault: Optional[str] = None,
        timeout: Optional[float] = None,
        connect_timeout: float = 10.0,
        max_idle_connections: int = 8,
        ssl_context: Optional[ssl.SSLContext] = None,
    ) -> None:
        url = base_url or os.environ.get("SHROUD_URL") or DEFAULT_URL
        token = token if token is not None else os.environ.get("SHROUD_TOKEN")
        self.vault: str = vault or os.environ.get("SHROUD_VAULT") or "default"
        self.base_url = url.rstrip("/")
        self._transport = Transport(url, token, timeout, connect_timeout, max_idle_connections, ssl_context)
        self.secrets = Secrets(self)
        self.vars = Vars(self)
        self.references = References(self)
        self.sandboxes = Sandboxes(self)
        self.deployments = Deployments(self)
        self.agents = Agents(self)
        self.runs = Runs(self)

    def __repr__(self) -> str:
        # Never the token.
        return f"Shroud(base_url={self.base_url!r}, vault={self.vault!r})"

    def health(self) -> Health:
        """``GET /api/health`` (no token needed): ``status`` ``ok``, or ``unavailable`` (503) when the store is down."""
        status, data = self._transport.request("GET", "/api/health", auth=False, raise_for_status=False)
        if status == 503 and isinstance(data, dict) and "status" in data:
            return Health.from_json(data)
        if status >= 300:
            raise error_for_status(status, data if isinstance(data, dict) else {}, f"the server answered {status}")
        return Health.from_json(data or {})

    def fetch(
        self,
        url: str,
        method: str = "GET",
        headers: Optional[Mapping[str, str]] = None,
        query: Optional[Mapping[str, Any]] = None,
        body: Any = None,
        auth: Union[None, str, Tuple[str, str], Mapping[str, Any]] = None,
        timeout_ms: Optional[int] = None,
    ) -> FetchResponse:
        """An HTTP request made by the server, ``$secret:`` references resolved just before it is sent.

        References may be in the URL's path or query, header values, query
        values, the body and ``auth``; the answer comes back with every
        resolved value masked. ``body`` is a string, or any other JSON value
        (sent as JSON, with ``Content-Type: application/json`` unless given).
        ``auth``: a dict (:func:`bearer_auth`, :func:`basic_auth`,
        :func:`aws_v4_auth`), a string (bearer token) or ``(user, password)``.
        """
        payload: Dict[str, Any] = {"url": url, "method": method.upper()}
        hdrs = {str(k): str(v) for k, v in (headers or {}).items()}
        if body is not None:
            if isinstance(body, (bytes, bytearray)):
                body = _text(body, "fetch body")
            elif not isinstance(body, str):
                body = json.dumps(body, separators=(",", ":"))
                if not any(k.lower() == "content-type" for k in hdrs):
                    hdrs["Content-Type"] = "application/json"
            payload["body"] = body
        if hdrs:
            payload["headers"] = hdrs
        if query:
            payload["query"] = {str(k): str(v) for k, v in query.items()}
        if auth is not None:
            if isinstance(auth, str):
                auth = bearer_auth(auth)
            elif isinstance(auth, tuple):
                auth = basic_auth(*auth)
            payload["auth"] = dict(auth)
        if timeout_ms is not None:
            payload["timeout_ms"] = int(timeout_ms)
        _, data = self._transport.request("POST", "/api/fetch", payload)
        return FetchResponse.from_json(data or {})

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        query: Optional[Mapping[str, Any]] = None,
    ) -> Any:
        """Any route: sends ``body`` as JSON, returns the parsed JSON answer; raises typed errors."""
        if not path.startswith("/"):
            path = "/" + path
        _, data = self._transport.request(method.upper(), path, body, query=query)
        return data

    def close(self) -> None:
        """Closes the idle connections (the client stays usable)."""
        self._transport.close()

    def __enter__(self) -> "Shroud":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

