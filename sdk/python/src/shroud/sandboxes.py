"""Sandboxes: ``rt.sandboxes.create(...)`` and the :class:`Sandbox` handle."""

from __future__ import annotations

import math
import os
from typing import (
    TYPE_CHECKING,
    Any,
    BinaryIO,
    Callable,
    Dict,
    Iterable,
    Iterator,
    List,
    Mapping,
    Optional,
    Sequence,
    Literal,
    Union,
    overload,
)

from ._transport import ByteStream, LineStream, RawBody, quote_segment
from .errors import CommandExitError, NotFoundError, ShroudConnectionError, ShroudError
from .types import ExecResult, ExitEvent, FileEntry, OutputEvent, ProcessInfo, SandboxInfo

if TYPE_CHECKING:  # pragma: no cover
    from .client import Shroud

__all__ = [
    "Sandbox",
    "Sandboxes",
    "ExecStream",
    "Commands",
    "CommandHandle",
    "Files",
    "Command",
    "SecretGrants",
    "OutputCallback",
    "FileData",
]

#: A command: a list (program and arguments, run as they are) or a string (run by ``sh -c``).
Command = Union[str, Sequence[str]]
#: Secret grants: ``["NAME", "ENV=NAME"]`` or ``{"ENV": "NAME"}``.
SecretGrants = Union[Iterable[str], Mapping[str, str]]
#: Called with each chunk of masked output, in order.
OutputCallback = Callable[[str], Any]
#: What ``files.write`` takes: bytes, text (UTF-8), a binary file object, or an iterable of bytes.
FileData = Union[bytes, bytearray, memoryview, str, BinaryIO, Iterable[bytes]]
PathLike = Union[str, "os.PathLike[str]"]


def _file_path(path: PathLike) -> str:
    text = os.fspath(path)
    if not isinstance(text, str):
        raise TypeError("path must be a str or an os.PathLike of str")
    return text


def _seconds(value: Any, what: str = "timeout") -> int:
    """Whole seconds for the server (a fraction rounds up: never shorter than asked)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{what} is a number of seconds")
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{what} must be finite")
        return int(math.ceil(value))
    return int(value)


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
        line_framed: bool = False,
    ) -> None:
        self._lines = lines
        # A background command's log holds one line per event, its newline
        # dropped: given back here, so that the data reads as a foreground
        # command's chunks do.
        self._line_framed = line_framed
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
            if self._line_framed and not data.endswith("\n"):
                data += "\n"
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


class Files:
    """``sandbox.files``: the sandbox's working directory over HTTP (raw bytes, streamed).

    Every ``path`` is relative to the working directory; one that leaves it
    (``..``, an absolute path, a link that leads out) is refused with
    :class:`~shroud.ValidationError`. What is read comes back masked with
    every secret ever granted to the sandbox. Each call renews the
    sandbox's lifetime.
    """

    def __init__(self, sandbox: "Sandbox") -> None:
        self._sandbox = sandbox

    def _route(self) -> str:
        return f"/api/sandboxes/{quote_segment(self._sandbox.id)}/files"

    def write(self, path: PathLike, data: FileData, length: Optional[int] = None) -> FileEntry:
        """Writes ``data`` to ``path`` (its directories made; the file replaced atomically).

        ``data``: ``bytes``, ``str`` (UTF-8), a binary file object (read and
        sent piece by piece, with its length when it is a regular file or
        ``io.BytesIO``) or an iterable of ``bytes`` (sent chunked, or with
        ``Content-Length`` when ``length`` is given). Nothing is gathered in
        memory, so a large file is sent as it is read. A full disk raises
        :class:`~shroud.PayloadTooLargeError` (413).
        """
        target = _file_path(path)
        body = RawBody(data, length)
        _, answer = self._sandbox._client._transport.upload("PUT", self._route(), body, query={"path": target})
        answer = answer or {}
        written = str(answer.get("path", target))
        return FileEntry(
            name=written.rstrip("/").rsplit("/", 1)[-1],
            type="file",
            size=answer.get("size"),
            path=written,
            raw=dict(answer),
        )

    def stream(self, path: PathLike) -> ByteStream:
        """The file's masked bytes as they arrive: iterate the chunks, ``read()`` or ``read_into(f)``.

        Use it as a context manager (closing it early drops the download).
        """
        return self._sandbox._client._transport.download("GET", self._route(), query={"path": _file_path(path)})

    def read(self, path: PathLike) -> bytes:
        """The file's bytes, masked (a granted secret's value reads as ``<secret:name>``)."""
        with self.stream(path) as s:
            return s.read()

    def read_text(self, path: PathLike, encoding: str = "utf-8", errors: str = "strict") -> str:
        """The file's masked content as text."""
        return self.read(path).decode(encoding, errors)

    def read_into(self, path: PathLike, fileobj: Any) -> int:
        """Streams the file into ``fileobj`` (anything with ``write(bytes)``); the bytes written."""
        with self.stream(path) as s:
            return s.read_into(fileobj)

    def list(self, path: PathLike = ".") -> List[FileEntry]:
        """The entries of directory ``path`` (default: the working directory itself)."""
        target = _file_path(path)
        _, data = self._sandbox._client._transport.request(
            "GET", self._route(), query={"path": target, "list": True}
        )
        data = data or {}
        parent = str(data.get("path", target))
        return [FileEntry.from_json(e, parent) for e in data.get("entries") or []]

    def remove(self, path: PathLike) -> None:
        """Removes a file, a link, or a directory with everything in it (:class:`~shroud.NotFoundError` if missing)."""
        self._sandbox._client._transport.request("DELETE", self._route(), query={"path": _file_path(path)})

    def exists(self, path: PathLike) -> bool:
        """True when ``path`` names an entry of the working directory (its parent is listed)."""
        target = _file_path(path).rstrip("/")
        parent, _, name = target.rpartition("/")
        if name in ("", "."):
            return True
        try:
            return any(e.name == name for e in self.list(parent or "."))
        except ShroudError as e:
            if e.status in (400, 404):  # a parent that is missing, or not a directory
                return False
            raise


class CommandHandle:
    """A command running in the background of a sandbox (``commands.run(..., background=True)``).

    ``pid`` is its process id in the API. Iterate the handle for its masked
    output (:class:`OutputEvent` s, then one :class:`ExitEvent`), followed
    as it is written; :meth:`wait` reads to the end and returns the
    :class:`ExecResult`; :meth:`kill` stops it. The callbacks given to
    ``run`` are called as the output is read (by the iteration or ``wait``).
    Leaving a ``with`` block kills it.
    """

    def __init__(
        self,
        sandbox: "Sandbox",
        pid: int,
        on_stdout: Optional[OutputCallback] = None,
        on_stderr: Optional[OutputCallback] = None,
    ) -> None:
        self._sandbox = sandbox
        self.pid = int(pid)
        self._on_stdout = on_stdout
        self._on_stderr = on_stderr
        self._stream: Optional[ExecStream] = None
        self.result: Optional[ExecResult] = None

    @property
    def process_id(self) -> int:
        return self.pid

    @property
    def exit_code(self) -> Optional[int]:
        """The exit code once :meth:`wait` (or the iteration) saw the end; ``None`` before."""
        if self.result is not None:
            return self.result.exit_code
        if self._stream is not None and self._stream.exit is not None:
            return self._stream.exit.exit_code
        return None

    def __repr__(self) -> str:
        return f"CommandHandle(pid={self.pid!r}, sandbox={self._sandbox.id!r})"

    def _route(self, suffix: str = "") -> str:
        return f"/api/sandboxes/{quote_segment(self._sandbox.id)}/processes/{self.pid}{suffix}"

    def _events(self) -> "ExecStream":
        if self._stream is None:
            lines = self._sandbox._client._transport.stream("GET", self._route("/log"), query={"follow": True})
            self._stream = ExecStream(lines, self._on_stdout, self._on_stderr, line_framed=True)
        return self._stream

    def __iter__(self) -> Iterator[Union[OutputEvent, ExitEvent]]:
        """Its events from the start, followed until it ends (one log shared with :meth:`wait`)."""
        return self._events()

    def wait(
        self,
        on_stdout: Optional[OutputCallback] = None,
        on_stderr: Optional[OutputCallback] = None,
        check: bool = False,
    ) -> ExecResult:
        """Follows the output to the command's end; its :class:`ExecResult` (``status``: ``exited``/``stopped``).

        A non-zero exit is not an error unless ``check=True`` (then
        :class:`~shroud.CommandExitError`, as ``commands.run`` in the
        foreground).
        """
        if self.result is None:
            stream = self._events()
            if on_stdout is not None:
                stream._on_stdout = on_stdout
            if on_stderr is not None:
                stream._on_stderr = on_stderr
            result = stream.wait()
            stream.close()
            if result.status is None:
                try:
                    result.status = self.info().status
                except ShroudError:
                    pass
            self.result = result
        if check and self.result.exit_code != 0:
            raise CommandExitError(self.result)
        return self.result

    def kill(self) -> bool:
        """Stops it (SIGTERM, SIGKILL after 10 s); False when there is no such command."""
        return self._sandbox.commands.kill(self.pid)

    def info(self) -> ProcessInfo:
        """Its line of ``commands.list()`` (:class:`~shroud.NotFoundError` when there is none)."""
        for p in self._sandbox.commands.list():
            if p.process_id == self.pid:
                return p
        raise NotFoundError(f"process {self.pid} not found", 404)

    def disconnect(self) -> None:
        """Stops following the output; the command goes on running."""
        stream, self._stream = self._stream, None
        if stream is not None:
            stream.close()

    def __enter__(self) -> "CommandHandle":
        return self

    def __exit__(self, *exc: Any) -> None:
        try:
            if self.result is None:
                self.kill()
        except ShroudError:
            pass
        finally:
            self.disconnect()


class Commands:
    """E2B-style commands of a sandbox: ``sandbox.commands.run(cmd, envs=..., on_stdout=...)``."""

    def __init__(self, sandbox: "Sandbox") -> None:
        self._sandbox = sandbox

    def _route(self, suffix: str = "") -> str:
        return f"/api/sandboxes/{quote_segment(self._sandbox.id)}/processes{suffix}"

    @overload
    def run(
        self,
        cmd: Command,
        envs: Optional[Mapping[str, str]] = ...,
        on_stdout: Optional[OutputCallback] = ...,
        on_stderr: Optional[OutputCallback] = ...,
        cwd: Optional[str] = ...,
        timeout: Optional[float] = ...,
        secrets: Optional[SecretGrants] = ...,
        stdin: Optional[str] = ...,
        background: Literal[False] = ...,
    ) -> ExecResult: ...

    @overload
    def run(
        self,
        cmd: Command,
        envs: Optional[Mapping[str, str]] = ...,
        on_stdout: Optional[OutputCallback] = ...,
        on_stderr: Optional[OutputCallback] = ...,
        cwd: Optional[str] = ...,
        timeout: Optional[float] = ...,
        secrets: Optional[SecretGrants] = ...,
        stdin: Optional[str] = ...,
        *,
        background: Literal[True],
    ) -> CommandHandle: ...

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
        background: bool = False,
    ) -> Union[ExecResult, CommandHandle]:
        """Runs ``cmd`` (a string goes to ``sh -c``) and returns its result.

        As in E2B, a non-zero exit raises :class:`~shroud.CommandExitError`
        (with the result on it); ``timeout`` is in seconds.

        With ``background=True`` it returns at once a :class:`CommandHandle`
        (``pid``, ``wait()``, ``kill()``, iteration over the output); the
        command keeps running between other calls until it ends, is killed,
        or the sandbox is deleted. It has the same environment, grants,
        masking and limits as a foreground one (the template's
        ``wall_seconds`` too, unless ``timeout`` says otherwise).
        """
        timeout_ms = None if timeout is None else max(1, int(round(timeout * 1000)))
        if background:
            body = self._sandbox._body(cmd, secrets, envs, cwd, timeout_ms, stdin, None, False)
            body["background"] = True
            _, data = self._sandbox._client._transport.request("POST", self._sandbox._path(), body)
            data = data or {}
            pid = data.get("process_id", data.get("pid"))
            if not isinstance(pid, int) or isinstance(pid, bool):
                raise ShroudConnectionError("the server did not answer a process_id for the background command")
            return CommandHandle(self._sandbox, pid, on_stdout, on_stderr)
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

    def list(self) -> List[ProcessInfo]:
        """The sandbox's background commands (running and ended)."""
        _, data = self._sandbox._client._transport.request("GET", self._route())
        return [ProcessInfo.from_json(p) for p in (data or {}).get("processes") or []]

    def kill(self, pid: int) -> bool:
        """Stops background command ``pid`` (SIGTERM, SIGKILL after 10 s); False when there is none."""
        try:
            self._sandbox._client._transport.request("DELETE", self._route(f"/{int(pid)}"))
        except NotFoundError:
            return False
        return True

    def connect(
        self,
        pid: int,
        on_stdout: Optional[OutputCallback] = None,
        on_stderr: Optional[OutputCallback] = None,
    ) -> CommandHandle:
        """A handle on background command ``pid`` (no request is made)."""
        return CommandHandle(self._sandbox, pid, on_stdout, on_stderr)


class Sandbox:
    """A sandbox: a persistent working directory where commands run with granted secrets.

    Use it as a context manager to delete it at the end::

        with rt.sandboxes.create(template="bash") as sb:
            print(sb.exec(["echo", "hi"]).stdout)
    """

    def __init__(self, client: "Shroud", id: str, info: Optional[Mapping[str, Any]] = None) -> None:
        self._client = client
        self.id = id
        #: The server's answer at create (``template``, ``network``, ``limits``, ``isolation``, ...).
        self.raw: Dict[str, Any] = dict(info or {})
        self.commands = Commands(self)
        self.files = Files(self)
        self.deleted = False

    @property
    def sandbox_id(self) -> str:
        """The id (E2B's name for it)."""
        return self.id

    @property
    def template(self) -> Optional[str]:
        return self.raw.get("template")

    def info(self) -> SandboxInfo:
        """``GET /api/sandboxes/{id}``: template, vault, node, last exit, ``timeout_s``, ``expires_at``.

        It does not renew the lifetime (execs and file calls do).
        """
        _, data = self._client._transport.request("GET", f"/api/sandboxes/{quote_segment(self.id)}")
        info = SandboxInfo.from_json(data or {})
        self.raw.update({k: v for k, v in (data or {}).items() if k in ("template", "vault", "timeout_s", "expires_at")})
        return info

    #: E2B's name for :meth:`info`.
    get_info = info

    def set_timeout(self, seconds: float) -> SandboxInfo:
        """A new lifetime: deleted after ``seconds`` idle, counted from now (1 s to a week)."""
        _, data = self._client._transport.request(
            "POST", f"/api/sandboxes/{quote_segment(self.id)}/timeout", {"timeout_s": _seconds(seconds)}
        )
        info = SandboxInfo.from_json(data or {})
        self.raw.update({"timeout_s": info.timeout_s, "expires_at": info.expires_at})
        return info

    def is_running(self) -> bool:
        """True while the sandbox exists (False once deleted or expired)."""
        try:
            self.info()
        except NotFoundError:
            return False
        return True

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
        timeout: Optional[float] = None,
    ) -> Sandbox:
        """Creates a sandbox of ``template`` (``bash``, ``python-3``, ``nodejs-20``, ...).

        ``secrets`` are granted to every command run in it (from ``vault``,
        default: the client's vault); ``strict=True`` refuses to create it
        when the host cannot give every isolation the template asks for.
        ``timeout``: seconds idle (no exec, no file call) after which the
        server deletes it (default 3600, at most a week).
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
        if timeout is not None:
            body["timeout_s"] = _seconds(timeout)
        _, data = self._client._transport.request("POST", "/api/sandboxes", body)
        data = data or {}
        return Sandbox(self._client, data["id"], data)

    def connect(self, id: str) -> Sandbox:
        """A handle on an existing sandbox (no request is made)."""
        return Sandbox(self._client, id)

    def get(self, id: str) -> SandboxInfo:
        """One of the caller's sandboxes (:class:`~shroud.NotFoundError` when gone)."""
        return Sandbox(self._client, id).info()

    def list(self) -> List[SandboxInfo]:
        """The caller's own sandboxes, oldest first."""
        _, data = self._client._transport.request("GET", "/api/sandboxes")
        return [SandboxInfo.from_json(s) for s in (data or {}).get("sandboxes") or []]

    def delete(self, id: str) -> None:
        self._client._transport.request("DELETE", f"/api/sandboxes/{quote_segment(id)}")
