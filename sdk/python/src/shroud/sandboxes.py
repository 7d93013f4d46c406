"""Sandboxes: ``rt.sandboxes.create(...)`` and the :class:`Sandbox` handle."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Union

from ._transport import LineStream, quote_segment
from .errors import CommandExitError, NotFoundError, ShroudConnectionError
from .types import ExecResult, ExitEvent, OutputEvent, SandboxInfo

if TYPE_CHECKING:  # pragma: no cover
    from .client import Shroud

__all__ = ["Sandbox", "Sandboxes", "ExecStream", "Commands", "Command", "SecretGrants", "OutputCallback"]

#: A command: a list (program and arguments, run as they are) or a string (run by ``sh -c``).
Command = Union[str, Sequence[str]]
#: Secret grants: ``["NAME", "ENV=NAME"]`` or ``{"ENV": "NAME"}``.
SecretGrants = Union[Iterable[str], Mapping[str, str]]
#: Called with each chunk of masked output, in order.
OutputCallback = Callable[[str], Any]


def _command(command: Command) -> Union[str, List[str]]:
    if isinstance(command, str):
        return command
    items = list(command)
    if not items or not all(isinstance(a, str) for a in items):
        raise TypeError("command must be a string or a non-empty list of strings")
    return items


def grants(secrets: Optional[SecretGrants]) -> Optional[List[str]]:
    """``["NAME", "ENV=NAME"]`` from a list of such strings or a ``{ENV: NAME}`` mapping."""
    if secrets is None:
        return None
    if isinstance(secrets, str):
        return [secrets]
    if isinstance(secrets, Mapping):
        return [name if env == name else f"{env}={name}" for env, name in secrets.items()]
    return [str(s) for s in secrets]


def _env(env: Optional[Mapping[str, Any]]) -> Optional[Dict[str, str]]:
    if env is None:
        return None
    return {str(k): str(v) for k, v in env.items()}


class ExecStream:
    """A streamed command: iterate its :class:`OutputEvent` s, then one :class:`ExitEvent`.

    ``result`` is the :class:`ExecResult` once the exit event came (its
    ``stdout`` / ``stderr`` are the chunks joined). Close it (or leave the
    ``with`` block) early to stop the command: the connection is dropped and
    the server kills the run.
    """

    def __init__(
        self,
        lines: LineStream,
        on_stdout: Optional[OutputCallback] = None,
        on_stderr: Optional[OutputCallback] = None,
    ) -> None:
        self._lines = lines
        self._on_stdout = on_stdout
        self._on_stderr = on_stderr
        self._stdout: List[str] = []
        self._stderr: List[str] = []
        self.exit: Optional[ExitEvent] = None
        self.result: Optional[ExecResult] = None
        self._closed = False

    def __iter__(self) -> "ExecStream":
        return self

    def __next__(self) -> Union[OutputEvent, ExitEvent]:
        if self.exit is not None or self._closed:
            self._drain()
            raise StopIteration
        while True:
            try:
                raw = next(self._lines)
            except StopIteration:
                raise ShroudConnectionError("the command's stream ended without its exit event") from None
            if raw.get("event") == "exit":
                self.exit = ExitEvent.from_json(raw)
                self.result = self._result(self.exit)
                return self.exit
            stream = raw.get("stream")
            if stream not in ("stdout", "stderr"):
                continue  # an event this version does not know
            data = raw.get("data")
            if not isinstance(data, str):
                data = ""
            event = OutputEvent(stream=stream, data=data, ts=raw.get("ts"), data_base64=raw.get("data_base64"), raw=raw)
            if stream == "stdout":
                self._stdout.append(data)
                if self._on_stdout is not None:
                    self._on_stdout(data)
            else:
                self._stderr.append(data)
                if self._on_stderr is not None:
                    self._on_stderr(data)
            return event

    def _result(self, exit: ExitEvent) -> ExecResult:
        return ExecResult(
            exit_code=exit.exit_code,
            stdout="".join(self._stdout),
            stderr="".join(self._stderr),
            duration_ms=exit.duration_ms,
            signal=exit.signal,
            timed_out=exit.timed_out,
            output_limit_reached=exit.output_limit_reached,
            cancelled=exit.cancelled,
            error=exit.error,
            raw=exit.raw,
        )

    def _drain(self) -> None:
        # Reads to the end of the answer so that its connection can be reused.
        try:
            for _ in self._lines:
                pass
        except ShroudConnectionError:
            pass

    def wait(self) -> ExecResult:
        """Reads the stream to its end (callbacks called on the way); the result."""
        for _ in self:
            pass
        assert self.result is not None
        return self.result

    def close(self) -> None:
        """Stops reading; before the exit event, this stops the command."""
        if self.exit is not None:
            self._drain()
        self._closed = True
        self._lines.close()

    def __enter__(self) -> "ExecStream":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class Commands:
    """E2B-style commands of a sandbox: ``sandbox.commands.run(cmd, envs=..., on_stdout=...)``."""

    def __init__(self, sandbox: "Sandbox") -> None:
        self._sandbox = sandbox

    def run(
        self,
        cmd: Command,
        envs: Optional[Mapping[str, str]] = None,
        on_stdout: Optional[OutputCallback] = None,
        on_stderr: Optional[OutputCallback] = None,
        cwd: Optional[str] = None,
        timeout: Optional[float] = None,
        secrets: Optional[SecretGrants] = None,
        stdin: Optional[str] = None,
    ) -> ExecResult:
        """Runs ``cmd`` (a string goes to ``sh -c``) and returns its result.

        As in E2B, a non-zero exit raises :class:`~shroud.CommandExitError`
        (with the result on it); ``timeout`` is in seconds.
        """
        timeout_ms = None if timeout is None else max(1, int(round(timeout * 1000)))
        result = self._sandbox.exec(
            cmd,
            secrets=secrets,
            env=envs,
            cwd=cwd,
            timeout_ms=timeout_ms,
            stdin=stdin,
            on_stdout=on_stdout,
            on_stderr=on_stderr,
        )
        if result.exit_code != 0:
            raise CommandExitError(result)
        return result


class Sandbox:
    """A sandbox: a persistent working directory where commands run with granted secrets.

    Use it as a context manager to delete it at the end::

        with rt.sandboxes.create(template="bash") as sb:
            print(sb.exec(["echo", "hi"]).stdout)
    """

    def __init__(self, client: "Shroud", id: str, info: Optional[Mapping[str, Any]] = None) -> None:
        self._client = client
        self.id = id
        self.info: Dict[str, Any] = dict(info or {})
        self.commands = Commands(self)
        self.deleted = False

    @property
    def sandbox_id(self) -> str:
        """The id (E2B's name for it)."""
        return self.id

    @property
    def template(self) -> Optional[str]:
        return self.info.get("template")

    def __repr__(self) -> str:
        return f"Sandbox(id={self.id!r}, template={self.template!r})"

    def _body(
        self,
        command: Command,
        secrets: Optional[SecretGrants],
        env: Optional[Mapping[str, Any]],
        cwd: Optional[str],
        timeout_ms: Optional[int],
        stdin: Optional[str],
        mask: Optional[str],
        stream: bool,
    ) -> Dict[str, Any]:
        body: Dict[str, Any] = {"command": _command(command)}
        g = grants(secrets)
        if g is not None:
            body["secrets"] = g
        e = _env(env)
        if e is not None:
            body["env"] = e
        if cwd is not None:
            body["cwd"] = cwd
        if timeout_ms is not None:
            body["timeout_ms"] = int(timeout_ms)
        if stdin is not None:
            body["stdin"] = stdin
        if mask is not None:
            body["mask"] = mask
        if stream:
            body["stream"] = True
        return body

    def _path(self) -> str:
        return f"/api/sandboxes/{quote_segment(self.id)}/exec"

    def exec(
        self,
        command: Command,
        secrets: Optional[SecretGrants] = None,
        env: Optional[Mapping[str, Any]] = None,
        cwd: Optional[str] = None,
        timeout_ms: Optional[int] = None,
        stdin: Optional[str] = None,
        on_stdout: Optional[OutputCallback] = None,
        on_stderr: Optional[OutputCallback] = None,
        mask: Optional[str] = None,
        stream: Optional[bool] = None,
    ) -> ExecResult:
        """Runs ``command`` and returns its :class:`ExecResult` (a non-zero exit is not an error).

        ``command`` is a list (program and arguments) or a string (run by
        ``sh -c``). ``secrets`` are granted to this command only, beside the
        sandbox's own; their values are masked in the output. With
        ``on_stdout`` / ``on_stderr`` (or ``stream=True``) the output is
        streamed and each masked chunk handed to the callback as it comes.
        """
        if stream is None:
            stream = on_stdout is not None or on_stderr is not None
        body = self._body(command, secrets, env, cwd, timeout_ms, stdin, mask, stream)
        if not stream:
            _, data = self._client._transport.request("POST", self._path(), body)
            return ExecResult.from_json(data or {})
        with ExecStream(self._client._transport.stream("POST", self._path(), body), on_stdout, on_stderr) as s:
            return s.wait()

    def stream(
        self,
        command: Command,
        secrets: Optional[SecretGrants] = None,
        env: Optional[Mapping[str, Any]] = None,
        cwd: Optional[str] = None,
        timeout_ms: Optional[int] = None,
        stdin: Optional[str] = None,
        on_stdout: Optional[OutputCallback] = None,
        on_stderr: Optional[OutputCallback] = None,
        mask: Optional[str] = None,
    ) -> ExecStream:
        """Starts ``command`` streamed: an iterator of :class:`OutputEvent` then an :class:`ExitEvent`."""
        body = self._body(command, secrets, env, cwd, timeout_ms, stdin, mask, True)
        return ExecStream(self._client._transport.stream("POST", self._path(), body), on_stdout, on_stderr)

    def delete(self) -> None:
        """Deletes the sandbox and its files."""
        self._client._transport.request("DELETE", f"/api/sandboxes/{quote_segment(self.id)}")
        self.deleted = True

    #: E2B's name for :meth:`delete`.
    kill = delete

    def close(self) -> None:
        """Deletes the sandbox unless it is gone already (what the context manager calls)."""
        if self.deleted:
            return
        try:
            self.delete()
        except NotFoundError:
            self.deleted = True

    def __enter__(self) -> "Sandbox":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class Sandboxes:
    """``rt.sandboxes``."""

    def __init__(self, client: "Shroud") -> None:
        self._client = client

    def create(
        self,
        template: str = "bash",
        secrets: Optional[SecretGrants] = None,
        env: Optional[Mapping[str, Any]] = None,
        vault: Optional[str] = None,
        strict: Optional[bool] = None,
    ) -> Sandbox:
        """Creates a sandbox of ``template`` (``bash``, ``python-3``, ``nodejs-20``, ...).

        ``secrets`` are granted to every command run in it (from ``vault``,
        default: the client's vault); ``strict=True`` refuses to create it
        when the host cannot give every isolation the template asks for.
        """
        body: Dict[str, Any] = {"template": template, "vault": vault or self._client.vault}
        g = grants(secrets)
        if g is not None:
            body["secrets"] = g
        e = _env(env)
        if e is not None:
            body["env"] = e
        if strict is not None:
            body["strict"] = bool(strict)
        _, data = self._client._transport.request("POST", "/api/sandboxes", body)
        data = data or {}
        return Sandbox(self._client, data["id"], data)

    def connect(self, id: str) -> Sandbox:
        """A handle on an existing sandbox (no request is made)."""
        return Sandbox(self._client, id)

    def list(self) -> List[SandboxInfo]:
        """The caller's own sandboxes, oldest first."""
        _, data = self._client._transport.request("GET", "/api/sandboxes")
        return [SandboxInfo.from_json(s) for s in (data or {}).get("sandboxes") or []]

    def delete(self, id: str) -> None:
        self._client._transport.request("DELETE", f"/api/sandboxes/{quote_segment(id)}")
