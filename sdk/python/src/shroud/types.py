"""The objects the client returns. Each keeps the server's whole JSON in ``raw``
(left out of its ``repr``), so a field this version does not know is still there.

No ``repr`` here shows a secret value: ``RenderedSecret.value`` and
``value_base64`` are hidden from it.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Dict, Iterator, List, Mapping, Optional

__all__ = [
    "SecretMetadata",
    "SetResult",
    "RenderedSecret",
    "Rendered",
    "SecretRef",
    "FetchResponse",
    "ExecResult",
    "OutputEvent",
    "ExitEvent",
    "SandboxInfo",
    "FileEntry",
    "ProcessInfo",
    "Run",
    "Health",
]


def _int(value: Any) -> Optional[int]:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


@dataclass
class SecretMetadata:
    """A secret's metadata (never its value)."""

    name: str
    version: int
    description: Optional[str] = None
    purpose: Optional[str] = None
    created_at: Optional[str] = None
    updated_at: Optional[str] = None
    expires_at: Optional[str] = None
    raw: Dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "SecretMetadata":
        return cls(
            name=data.get("name", ""),
            version=data.get("version", 0),
            description=data.get("description"),
            purpose=data.get("purpose"),
            created_at=data.get("created_at"),
            updated_at=data.get("updated_at"),
            expires_at=data.get("expires_at"),
            raw=dict(data),
        )


@dataclass
class SetResult:
    """What a bulk set did: the names set and their new versions."""

    set_secrets: List[str]
    versions: Dict[str, int]


@dataclass
class RenderedSecret:
    """One secret of :meth:`Secrets.rendered`: ``value`` (``mode="Full"``) or ``preview``."""

    name: str
    version: Optional[int] = None
    value: Optional[str] = field(default=None, repr=False)
    value_base64: Optional[str] = field(default=None, repr=False)
    preview: Optional[str] = None
    raw: Dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def bytes(self) -> Optional[bytes]:
        """The value as bytes (from ``value`` or ``value_base64``); ``None`` for a preview."""
        if self.value is not None:
            return self.value.encode("utf-8")
        if self.value_base64 is not None:
            return base64.b64decode(self.value_base64)
        return None


@dataclass
class Rendered:
    """A vault rendered: ``secrets`` in full or as previews (``mode``)."""

    vault: str
    mode: str
    secrets: List[RenderedSecret]
    raw: Dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "Rendered":
        items = [
            RenderedSecret(
                name=s.get("name", ""),
                version=s.get("version"),
                value=s.get("value"),
                value_base64=s.get("value_base64"),
                preview=s.get("preview"),
                raw=dict(s),
            )
            for s in data.get("secrets") or []
        ]
        return cls(vault=data.get("vault", ""), mode=data.get("mode", ""), secrets=items, raw=dict(data))

    def __iter__(self) -> Iterator[RenderedSecret]:
        return iter(self.secrets)

    def __len__(self) -> int:
        return len(self.secrets)

    def __getitem__(self, name: str) -> RenderedSecret:
        for s in self.secrets:
            if s.name == name:
                return s
        raise KeyError(name)

    def values(self) -> Dict[str, Optional[str]]:
        """``{name: value}`` (``mode="Full"``; ``None`` for a value that is not UTF-8: see ``value_base64``)."""
        return {s.name: s.value for s in self.secrets}

    def previews(self) -> Dict[str, Optional[str]]:
        """``{name: preview}`` (``mode="PreviewOnly"``)."""
        return {s.name: s.preview for s in self.secrets}


class SecretRef(str):
    """An opaque reference ``$secret:<token>``: a ``str``, with ``expires_at``.

    It stands for a value in ``rt.fetch(...)`` fields; the value itself never
    comes back to the client.
    """

    expires_at: Optional[str]

    def __new__(cls, ref: str, expires_at: Optional[str] = None) -> "SecretRef":
        obj = super().__new__(cls, ref)
        obj.expires_at = expires_at
        return obj


@dataclass
class FetchResponse:
    """The answer of ``rt.fetch``: every resolved value masked in it."""

    status: int
    headers: Dict[str, str]
    body: Optional[str] = None
    body_base64: Optional[str] = field(default=None, repr=False)
    raw: Dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "FetchResponse":
        return cls(
            status=data.get("status", 0),
            headers=dict(data.get("headers") or {}),
            body=data.get("body"),
            body_base64=data.get("body_base64"),
            raw=dict(data),
        )

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def text(self) -> str:
        if self.body is not None:
            return self.body
        return self.content.decode("utf-8", "replace")

    @property
    def content(self) -> bytes:
        if self.body is not None:
            return self.body.encode("utf-8")
        if self.body_base64 is not None:
            return base64.b64decode(self.body_base64)
        return b""

    def json(self) -> Any:
        return json.loads(self.text)


@dataclass
class ExecResult:
    """A finished sandbox command: masked output, exit code and how it ended.

    ``exit_code`` follows ``shroud exec``: the child's code, 128+N when killed
    by signal N, 124 on timeout, 125 when shroud failed, 126/127 when the
    program cannot be run / is not found.
    """

    exit_code: int
    stdout: str = ""
    stderr: str = ""
    duration_ms: Optional[int] = None
    signal: Optional[int] = None
    timed_out: bool = False
    output_limit_reached: bool = False
    cancelled: bool = False
    stdout_base64: Optional[str] = field(default=None, repr=False)
    stderr_base64: Optional[str] = field(default=None, repr=False)
    unmasked_secrets: List[str] = field(default_factory=list)
    error: Optional[str] = None
    #: A background command's end: ``exited`` or ``stopped`` (killed); ``None`` for a foreground one.
    status: Optional[str] = None
    raw: Dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "ExecResult":
        code = _int(data.get("exit_code"))
        if code is None:
            code = _int(data.get("code"))
        return cls(
            exit_code=code if code is not None else -1,
            stdout=data.get("stdout") or "",
            stderr=data.get("stderr") or "",
            duration_ms=_int(data.get("duration_ms")),
            signal=_int(data.get("signal")),
            timed_out=bool(data.get("timed_out", False)),
            output_limit_reached=bool(data.get("output_limit_reached", False)),
            cancelled=bool(data.get("cancelled", False)),
            stdout_base64=data.get("stdout_base64"),
            stderr_base64=data.get("stderr_base64"),
            unmasked_secrets=list(data.get("unmasked_secrets") or []),
            error=data.get("error"),
            status=data.get("status"),
            raw=dict(data),
        )

    @property
    def ok(self) -> bool:
        """True when the command exited with code 0."""
        return self.exit_code == 0

    @property
    def stdout_bytes(self) -> bytes:
        """stdout byte for byte (from ``stdout_base64`` when it was not UTF-8)."""
        if self.stdout_base64 is not None:
            return base64.b64decode(self.stdout_base64)
        return self.stdout.encode("utf-8")

    @property
    def stderr_bytes(self) -> bytes:
        if self.stderr_base64 is not None:
            return base64.b64decode(self.stderr_base64)
        return self.stderr.encode("utf-8")


@dataclass
class OutputEvent:
    """A chunk of a streamed command's masked output (``stream``: ``stdout`` or ``stderr``)."""

    stream: str
    data: str
    ts: Optional[str] = None
    data_base64: Optional[str] = field(default=None, repr=False)
    raw: Dict[str, Any] = field(default_factory=dict, repr=False, compare=False)


@dataclass
class ExitEvent:
    """The last event of a streamed command."""

    exit_code: int
    signal: Optional[int] = None
    duration_ms: Optional[int] = None
    timed_out: bool = False
    output_limit_reached: bool = False
    cancelled: bool = False
    error: Optional[str] = None
    ts: Optional[str] = None
    #: A background command's end, when the log says it: ``exited`` or ``stopped``.
    status: Optional[str] = None
    raw: Dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "ExitEvent":
        code = _int(data.get("exit_code"))
        if code is None:
            code = _int(data.get("code"))
        return cls(
            exit_code=code if code is not None else -1,
            signal=_int(data.get("signal")),
            duration_ms=_int(data.get("duration_ms")),
            timed_out=bool(data.get("timed_out", False)),
            output_limit_reached=bool(data.get("output_limit_reached", False)),
            cancelled=bool(data.get("cancelled", False)),
            error=data.get("error"),
            ts=data.get("ts"),
            status=data.get("status"),
            raw=dict(data),
        )


@dataclass
class SandboxInfo:
    """A sandbox, as ``rt.sandboxes.list()`` and ``sandbox.info()`` give it.

    ``timeout_s`` and ``expires_at`` (RFC 3339, UTC) come from
    ``sandbox.info()`` / ``set_timeout()``: the sandbox is deleted once it
    has been idle (no exec, no file call) for ``timeout_s`` seconds.
    """

    id: str
    template: Optional[str] = None
    vault: Optional[str] = None
    created_at: Optional[str] = None
    last_exit: Optional[int] = None
    last_exec_at: Optional[str] = None
    node: Optional[str] = None
    timeout_s: Optional[int] = None
    expires_at: Optional[str] = None
    raw: Dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "SandboxInfo":
        return cls(
            id=data.get("id", ""),
            template=data.get("template"),
            vault=data.get("vault"),
            created_at=data.get("created_at"),
            last_exit=_int(data.get("last_exit")),
            last_exec_at=data.get("last_exec_at"),
            node=data.get("node"),
            timeout_s=_int(data.get("timeout_s")),
            expires_at=data.get("expires_at"),
            raw=dict(data),
        )

    @property
    def expires_at_datetime(self) -> Optional[datetime]:
        """``expires_at`` as an aware :class:`~datetime.datetime` (UTC)."""
        return _datetime(self.expires_at)


def _datetime(text: Optional[str]) -> Optional[datetime]:
    if not text:
        return None
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        # Python < 3.11 takes 0, 3 or 6 digits of fraction only.
        head, sep, rest = text.partition(".")
        if not sep:
            return None
        digits = "".join(c for c in rest if c.isdigit())
        zone = rest[len(digits):]
        try:
            return datetime.fromisoformat(f"{head}.{(digits + '000000')[:6]}{zone}")
        except ValueError:
            return None


@dataclass
class FileEntry:
    """A file of a sandbox's working directory: what ``files.list()`` and ``files.write()`` give.

    ``type`` is ``file``, ``directory``, ``symlink`` or ``other``; ``path``
    is relative to the working directory.
    """

    name: str
    type: str
    size: Optional[int] = None
    path: str = ""
    raw: Dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Mapping[str, Any], parent: str = "") -> "FileEntry":
        name = str(data.get("name", ""))
        parent = parent.strip("/")
        if parent in ("", "."):
            parent = ""
        return cls(
            name=name,
            type=str(data.get("type", "other")),
            size=_int(data.get("size")),
            path=f"{parent}/{name}" if parent else name,
            raw=dict(data),
        )

    @property
    def is_dir(self) -> bool:
        return self.type == "directory"

    @property
    def is_file(self) -> bool:
        return self.type == "file"


@dataclass
class ProcessInfo:
    """A background command of a sandbox (``sandbox.commands.list()``).

    ``status``: ``running``, ``exited`` or ``stopped`` (killed).
    """

    process_id: int
    command: List[str] = field(default_factory=list)
    status: Optional[str] = None
    exit_code: Optional[int] = None
    started_at: Optional[str] = None
    ended_at: Optional[str] = None
    raw: Dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "ProcessInfo":
        pid = _int(data.get("process_id"))
        if pid is None:
            pid = _int(data.get("pid"))
        command = data.get("command")
        if isinstance(command, str):
            command = [command]
        return cls(
            process_id=pid if pid is not None else -1,
            command=[str(c) for c in (command or [])],
            status=data.get("status"),
            exit_code=_int(data.get("exit_code")),
            started_at=data.get("started_at"),
            ended_at=data.get("ended_at"),
            raw=dict(data),
        )

    @property
    def pid(self) -> int:
        """E2B's name for ``process_id``."""
        return self.process_id

    @property
    def running(self) -> bool:
        return self.status == "running"


@dataclass
class Run:
    """An agent run. ``status``: ``running``, ``succeeded``, ``failed``, ``timed_out`` or ``cancelled``."""

    run_id: str
    slug: Optional[str] = None
    status: Optional[str] = None
    exit_code: Optional[int] = None
    started_at: Optional[str] = None
    ended_at: Optional[str] = None
    log: Optional[str] = None
    vault: Optional[str] = None
    raw: Dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "Run":
        return cls(
            run_id=data.get("run_id", ""),
            slug=data.get("slug"),
            status=data.get("status"),
            exit_code=_int(data.get("exit_code")),
            started_at=data.get("started_at"),
            ended_at=data.get("ended_at"),
            log=data.get("log"),
            vault=data.get("vault"),
            raw=dict(data),
        )

    @property
    def done(self) -> bool:
        return self.status not in (None, "running")

    @property
    def ok(self) -> bool:
        return self.status == "succeeded"


@dataclass
class Health:
    """``GET /api/health``: ``status`` is ``ok`` or ``unavailable``."""

    status: str
    version: Optional[str] = None
    store_reachable: Optional[bool] = None
    raw: Dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "Health":
        store = data.get("store") or {}
        return cls(
            status=data.get("status", ""),
            version=data.get("version"),
            store_reachable=store.get("reachable") if isinstance(store, dict) else None,
            raw=dict(data),
        )

    @property
    def ok(self) -> bool:
        return self.status == "ok"
