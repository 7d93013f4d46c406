"""HTTP/1.1 over http.client: a small pool of keep-alive connections.

A request takes an idle connection from the pool (or opens one), and gives
it back once its answer has been read to the end, so sequential calls reuse
one connection and concurrent ones (threads, or a call made from a stream's
callback) each get their own. A stream keeps its connection until it ends;
one closed early closes its connection, which is how the server learns that
nobody listens any more (it then stops the command).
"""

from __future__ import annotations

import http.client
import json
import select
import socket
import ssl
import threading
from typing import Any, Dict, Iterator, List, Mapping, Optional, Tuple
from urllib.parse import quote, urlencode, urlsplit, unquote

from ._version import __version__
from .errors import ShroudConnectionError, error_for_status

USER_AGENT = f"shroud-python/{__version__}"

# Errors that mean a reused keep-alive connection was closed by the server
# before it read the request: the request is sent again once on a new one.
_STALE = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError, ConnectionAbortedError)


class _OneSend:
    """Sends a request's headers and a bytes body in one ``send`` (one segment, one syscall)."""

    _buffer: List[bytes]

    def _send_output(self, message_body: Any = None, encode_chunked: bool = False) -> None:
        buffer = getattr(self, "_buffer", None)
        if isinstance(message_body, bytes) and isinstance(buffer, list) and not encode_chunked:
            buffer.extend((b"", b""))
            msg = b"\r\n".join(buffer) + message_body
            del buffer[:]
            self.send(msg)  # type: ignore[attr-defined]
            return
        super()._send_output(message_body, encode_chunked=encode_chunked)  # type: ignore[misc]


class _HTTPConnection(_OneSend, http.client.HTTPConnection):
    pass


class _HTTPSConnection(_OneSend, http.client.HTTPSConnection):
    pass


class _UnixHTTPConnection(_OneSend, http.client.HTTPConnection):
    def __init__(self, path: str, timeout: Optional[float]) -> None:
        super().__init__("localhost", timeout=timeout)
        self._unix_path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(self.timeout)
            sock.connect(self._unix_path)
        except BaseException:
            sock.close()
            raise
        self.sock = sock


def quote_segment(value: str) -> str:
    """One path segment, percent-encoded (nothing in it can add a segment)."""
    return quote(str(value), safe="")


def _query_value(value: Any) -> str:
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    return str(value)


class Transport:
    def __init__(
        self,
        base_url: str,
        token: Optional[str],
        timeout: Optional[float] = None,
        connect_timeout: float = 10.0,
        max_idle: int = 8,
        ssl_context: Optional[ssl.SSLContext] = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._token = token
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self._max_idle = max(0, max_idle)
        self._ssl_context = ssl_context
        self._idle: List[http.client.HTTPConnection] = []
        self._lock = threading.Lock()
        self._closed = False
        if self.base_url.startswith("unix:"):
            # unix:/path/to/shroud.sock (the supervisor's socket: no token needed)
            self._scheme = "unix"
            self._unix_path = unquote(self.base_url[len("unix:"):].lstrip())
            if self._unix_path.startswith("//"):
                self._unix_path = self._unix_path[2:]
            self._host, self._port, self._prefix = "localhost", None, ""
        else:
            parts = urlsplit(self.base_url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError("base_url must be http://HOST[:PORT], https://HOST[:PORT] or unix:/PATH")
            self._scheme = parts.scheme
            self._unix_path = ""
            self._host = parts.hostname
            self._port = parts.port
            self._prefix = parts.path.rstrip("/")
        self._base_headers = {"User-Agent": USER_AGENT, "Accept": "application/json"}
        if token:
            self._base_headers["Authorization"] = f"Bearer {token}"

    # -- connections -----------------------------------------------------

    def _open(self) -> http.client.HTTPConnection:
        conn: http.client.HTTPConnection
        if self._scheme == "unix":
            conn = _UnixHTTPConnection(self._unix_path, timeout=self.connect_timeout)
        elif self._scheme == "https":
            conn = _HTTPSConnection(self._host, self._port, timeout=self.connect_timeout, context=self._ssl_context)
        else:
            conn = _HTTPConnection(self._host, self._port, timeout=self.connect_timeout)
        conn.connect()
        assert conn.sock is not None
        if self._scheme != "unix":
            try:
                conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass
        conn.sock.settimeout(self.timeout)
        return conn

    def _take(self) -> Tuple[http.client.HTTPConnection, bool]:
        while True:
            with self._lock:
                conn = self._idle.pop() if self._idle else None
            if conn is None:
                return self._open(), False
            sock = conn.sock
            if sock is None:
                conn.close()
                continue
            try:
                # Readable while idle: the server closed it (or sent junk).
                readable, _, _ = select.select([sock], [], [], 0)
            except (OSError, ValueError):
                readable = [sock]
            if readable:
                conn.close()
                continue
            return conn, True

    def _give_back(self, conn: http.client.HTTPConnection) -> None:
        with self._lock:
            if not self._closed and len(self._idle) < self._max_idle and conn.sock is not None:
                self._idle.append(conn)
                return
        conn.close()

    def close(self) -> None:
        """Closes every idle connection (streams in flight keep theirs)."""
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()

    # -- requests --------------------------------------------------------

    def url(self, path: str, query: Optional[Mapping[str, Any]] = None) -> str:
        target = self._prefix + path
        if query:
            pairs = [(k, _query_value(v)) for k, v in query.items() if v is not None]
            if pairs:
                target += "?" + urlencode(pairs)
        return target

    def _send(
        self,
        method: str,
        target: str,
        body: Optional[bytes],
        headers: Dict[str, str],
    ) -> Tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
        for attempt in (0, 1):
            try:
                conn, reused = self._take()
            except (OSError, http.client.HTTPException) as e:
                raise ShroudConnectionError(f"cannot reach {self.base_url}: {type(e).__name__}: {e}") from None
            try:
                conn.request(method, target, body=body, headers=headers)
                return conn, conn.getresponse()
            except _STALE as e:
                conn.close()
                if reused and attempt == 0:
                    continue
                raise ShroudConnectionError(f"the connection to {self.base_url} broke: {type(e).__name__}") from None
            except (OSError, http.client.HTTPException) as e:
                conn.close()
                raise ShroudConnectionError(f"cannot reach {self.base_url}: {type(e).__name__}: {e}") from None
        raise AssertionError("unreachable")

    def _headers(self, has_body: bool, auth: bool) -> Dict[str, str]:
        headers = dict(self._base_headers)
        if not auth:
            headers.pop("Authorization", None)
        if has_body:
            headers["Content-Type"] = "application/json"
        return headers

    @staticmethod
    def _encode(body: Any) -> Optional[bytes]:
        if body is None:
            return None
        return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode("utf-8")

    def _raise_for(self, resp: http.client.HTTPResponse, data: bytes) -> None:
        body: Any = None
        if data:
            try:
                body = json.loads(data)
            except ValueError:
                body = None
        fallback = ""
        if not isinstance(body, dict):
            body = {}
            fallback = f"the server answered {resp.status} {resp.reason}".strip()
        raise error_for_status(resp.status, body, fallback, resp.getheader("Retry-After"))

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        query: Optional[Mapping[str, Any]] = None,
        auth: bool = True,
        raise_for_status: bool = True,
    ) -> Tuple[int, Any]:
        """Sends one request and reads its whole answer: ``(status, parsed JSON or None)``."""
        payload = self._encode(body)
        conn, resp = self._send(method, self.url(path, query), payload, self._headers(payload is not None, auth))
        try:
            data = resp.read()
        except (OSError, http.client.HTTPException) as e:
            conn.close()
            raise ShroudConnectionError(f"reading the answer of {self.base_url} failed: {type(e).__name__}") from None
        if resp.will_close:
            conn.close()
        else:
            self._give_back(conn)
        status = resp.status
        if status >= 300 and raise_for_status:
            self._raise_for(resp, data)
        if not data:
            return status, None
        try:
            return status, json.loads(data)
        except ValueError:
            if status >= 300:
                return status, None
            raise ShroudConnectionError(f"the answer of {self.base_url} is not JSON") from None

    def stream(
        self,
        method: str,
        path: str,
        body: Any = None,
        query: Optional[Mapping[str, Any]] = None,
    ) -> "LineStream":
        """Sends one request whose answer is JSON lines; raises for a non-2xx answer."""
        payload = self._encode(body)
        headers = self._headers(payload is not None, True)
        headers["Accept"] = "application/x-ndjson, application/json"
        conn, resp = self._send(method, self.url(path, query), payload, headers)
        if resp.status >= 300:
            try:
                data = resp.read()
            except (OSError, http.client.HTTPException):
                data = b""
            if resp.will_close:
                conn.close()
            else:
                self._give_back(conn)
            self._raise_for(resp, data)
        return LineStream(self, conn, resp)


class LineStream:
    """The JSON lines of one streamed answer, as dicts, read as they arrive.

    Iterate it, or use it as a context manager; :meth:`close` before the end
    drops the connection (the server then stops what it was streaming).
    """

    def __init__(self, transport: Transport, conn: http.client.HTTPConnection, resp: http.client.HTTPResponse) -> None:
        self._transport = transport
        self._conn: Optional[http.client.HTTPConnection] = conn
        self._resp = resp
        self.status = resp.status

    def __iter__(self) -> Iterator[Dict[str, Any]]:
        return self

    def __next__(self) -> Dict[str, Any]:
        if self._conn is None:
            raise StopIteration
        while True:
            try:
                line = self._resp.readline()
            except (OSError, http.client.HTTPException) as e:
                self._abort()
                raise ShroudConnectionError(f"the stream from {self._transport.base_url} broke: {type(e).__name__}") from None
            if not line:
                self._finish()
                raise StopIteration
            line = line.strip()
            if not line:
                continue
            try:
                value = json.loads(line)
            except ValueError:
                self._abort()
                raise ShroudConnectionError("the stream holds a line that is not JSON") from None
            if isinstance(value, dict):
                return value

    def _finish(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        if self._resp.isclosed() and not self._resp.will_close:
            self._transport._give_back(conn)
        else:
            conn.close()

    def _abort(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    def close(self) -> None:
        """Ends the stream; before its end, the connection is closed."""
        if self._conn is None:
            return
        if self._resp.isclosed():
            self._finish()
        else:
            self._abort()

    @property
    def closed(self) -> bool:
        return self._conn is None

    def __enter__(self) -> "LineStream":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:  # pragma: no cover - best effort
        try:
            self.close()
        except Exception:
            pass
