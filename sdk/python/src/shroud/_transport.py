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
import io
import json
import os
import select
import socket
import ssl
import stat
import threading
from typing import Any, Dict, Iterator, List, Mapping, Optional, Tuple, TypeVar
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
        return self._json_answer(conn, resp, raise_for_status)

    def _json_answer(
        self,
        conn: http.client.HTTPConnection,
        resp: http.client.HTTPResponse,
        raise_for_status: bool = True,
    ) -> Tuple[int, Any]:
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


    # -- raw bodies (files) ------------------------------------------------

    def upload(
        self,
        method: str,
        path: str,
        body: "RawBody",
        query: Optional[Mapping[str, Any]] = None,
        content_type: str = "application/octet-stream",
    ) -> Tuple[int, Any]:
        """Sends ``body`` as the raw request body, streamed; the parsed JSON answer.

        A body of known length goes with ``Content-Length``, any other with
        chunked transfer encoding; either way it is sent piece by piece as
        it is read, never gathered in memory. When the server answers before
        reading the whole body (a full disk: 413), that answer is raised.
        """
        target = self.url(path, query)
        headers = self._headers(False, True)
        headers["Content-Type"] = content_type
        if body.length is not None:
            headers["Content-Length"] = str(body.length)
        else:
            headers["Transfer-Encoding"] = "chunked"
        for attempt in (0, 1):
            try:
                if body.rewindable:
                    conn, reused = self._take()
                else:
                    # A body read once cannot be sent again: no stale connection risked.
                    conn, reused = self._open(), False
            except (OSError, http.client.HTTPException) as e:
                raise ShroudConnectionError(f"cannot reach {self.base_url}: {type(e).__name__}: {e}") from None
            retry = reused and attempt == 0
            try:
                conn.putrequest(method, target)
                for k, v in headers.items():
                    conn.putheader(k, v)
                small = body.small()
                if small is not None:
                    conn.endheaders(message_body=small)
                else:
                    conn.endheaders()
            except (OSError, http.client.HTTPException) as e:
                conn.close()
                if retry:
                    continue
                raise ShroudConnectionError(f"cannot reach {self.base_url}: {type(e).__name__}: {e}") from None
            sent_all = True
            if small is None:
                try:
                    body.send_to(conn)
                except _SendFailed:
                    sent_all = False  # the server may have answered already (413): read it below
                except BaseException:
                    conn.close()  # the source failed (or a wrong length): the server sees the upload cut
                    raise
            try:
                resp = conn.getresponse()
            except (OSError, http.client.HTTPException) as e:
                conn.close()
                if retry and body.rewind():
                    continue
                what = "the upload" if sent_all else "the upload, cut short,"
                raise ShroudConnectionError(f"{what} to {self.base_url} got no answer: {type(e).__name__}") from None
            if not sent_all:
                resp.will_close = True  # part of the body is still unsent: the connection cannot be reused
            return self._json_answer(conn, resp)
        raise AssertionError("unreachable")

    def download(
        self,
        method: str,
        path: str,
        query: Optional[Mapping[str, Any]] = None,
    ) -> "ByteStream":
        """Sends one request whose answer is raw bytes, read as they come; raises for a non-2xx answer."""
        headers = self._headers(False, True)
        headers["Accept"] = "application/octet-stream, application/json"
        conn, resp = self._send(method, self.url(path, query), None, headers)
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
        return ByteStream(self, conn, resp)


class _SendFailed(Exception):
    """Writing the request body to the socket failed (the server closed it)."""


#: Bytes read from a source and sent per piece of an upload / download.
CHUNK_SIZE = 256 * 1024
#: A bytes body up to this size goes in the same ``send`` as the headers.
_SMALL = 64 * 1024


class RawBody:
    """The body of an upload: bytes, or a binary file object / iterable of bytes read while sending.

    ``length`` is known for bytes, for regular files (from their size and
    position) and for ``io.BytesIO``; pass it for an iterator to send
    ``Content-Length`` rather than chunks (it is checked).
    """

    def __init__(self, data: Any, length: Optional[int] = None) -> None:
        self._bytes: Optional[memoryview] = None
        self._file: Any = None
        self._iter: Any = None
        self._start: Optional[int] = None
        self.rewindable = False
        if isinstance(data, str):
            data = data.encode("utf-8")
        if isinstance(data, (bytes, bytearray, memoryview)):
            view = memoryview(data).cast("B")
            self._bytes = view
            self.rewindable = True
            if length is not None and length != view.nbytes:
                raise ValueError(f"length={length} but the data holds {view.nbytes} bytes")
            self.length: Optional[int] = view.nbytes
            return
        if isinstance(data, Mapping) or isinstance(data, (int, float)):
            raise TypeError(f"data must be bytes, str, a binary file object or an iterable of bytes, not {type(data).__name__}")
        if hasattr(data, "read"):
            self._file = data
            self.length = length if length is not None else self._file_length(data)
            try:
                if data.seekable():
                    self._start = data.tell()
                    self.rewindable = True
            except (AttributeError, OSError, ValueError):
                pass
            return
        try:
            self._iter = iter(data)
        except TypeError:
            raise TypeError(
                f"data must be bytes, str, a binary file object or an iterable of bytes, not {type(data).__name__}"
            ) from None
        self.length = length

    @staticmethod
    def _file_length(f: Any) -> Optional[int]:
        getbuffer = getattr(f, "getbuffer", None)
        try:
            if getbuffer is not None:  # io.BytesIO
                return int(getbuffer().nbytes - f.tell())
            fileno = f.fileno()
            st = os.fstat(fileno)
            if stat.S_ISREG(st.st_mode) and f.seekable():
                return max(0, int(st.st_size - f.tell()))
        except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
            pass
        return None

    def small(self) -> Optional[bytes]:
        """The whole body when it is small bytes (sent with the headers); else ``None``."""
        if self._bytes is not None and self._bytes.nbytes <= _SMALL:
            return self._bytes.tobytes()
        return None

    def rewind(self) -> bool:
        """Back to the start, for a second try; False when the body cannot be read again."""
        if self._bytes is not None:
            return True
        if self._file is not None and self._start is not None:
            try:
                self._file.seek(self._start)
                return True
            except (OSError, ValueError):
                return False
        return False

    def _pieces(self) -> Iterator[Any]:
        if self._bytes is not None:
            view = self._bytes
            for at in range(0, view.nbytes, CHUNK_SIZE):
                yield view[at : at + CHUNK_SIZE]
            return
        if self._file is not None:
            read = self._file.read
            while True:
                piece = read(CHUNK_SIZE)
                if not piece:
                    return
                yield piece
        assert self._iter is not None
        for piece in self._iter:
            yield piece

    def send_to(self, conn: http.client.HTTPConnection) -> None:
        sock = conn.sock
        assert sock is not None
        chunked = self.length is None
        total = 0
        for piece in self._pieces():
            if isinstance(piece, str):
                piece = piece.encode("utf-8")
            elif not isinstance(piece, (bytes, bytearray, memoryview)):
                raise TypeError(f"the data yielded a {type(piece).__name__}, not bytes")
            size = memoryview(piece).nbytes
            if not size:
                continue
            total += size
            if not chunked and self.length is not None and total > self.length:
                raise ValueError(f"the data holds more than length={self.length} bytes")
            try:
                if chunked:
                    sock.sendall(b"%X\r\n" % size)
                    sock.sendall(piece)
                    sock.sendall(b"\r\n")
                else:
                    sock.sendall(piece)
            except OSError:
                raise _SendFailed() from None
        if not chunked and total != self.length:
            raise ValueError(f"the data held {total} bytes, not length={self.length}")
        if chunked:
            try:
                sock.sendall(b"0\r\n\r\n")
            except OSError:
                raise _SendFailed() from None


_Self = TypeVar("_Self", bound="_HeldAnswer")


class _HeldAnswer:
    """An answer read as it arrives, holding its connection until the end:
    given back to the pool after a clean end, closed when dropped before it
    (the server then stops what it was sending)."""

    def __init__(self, transport: Transport, conn: http.client.HTTPConnection, resp: http.client.HTTPResponse) -> None:
        self._transport = transport
        self._conn: Optional[http.client.HTTPConnection] = conn
        self._resp = resp
        self.status = resp.status

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
        """Ends the answer; before its end, the connection is closed."""
        if self._conn is None:
            return
        if self._resp.isclosed():
            self._finish()
        else:
            self._abort()

    @property
    def closed(self) -> bool:
        return self._conn is None

    def __enter__(self: _Self) -> _Self:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:  # pragma: no cover - best effort
        try:
            self.close()
        except Exception:
            pass


class ByteStream(_HeldAnswer):
    """The raw bytes of one answer (a file's content), read as they arrive.

    Iterate it for chunks, :meth:`read` some, or :meth:`read_into` a file
    object; closing it before the end drops the connection.
    """

    def __init__(self, transport: Transport, conn: http.client.HTTPConnection, resp: http.client.HTTPResponse) -> None:
        super().__init__(transport, conn, resp)
        self.chunk_size = CHUNK_SIZE

    def read(self, n: int = -1) -> bytes:
        """Up to ``n`` bytes (all that is left with ``n < 0``); ``b""`` at the end."""
        if self._conn is None:
            return b""
        try:
            data = self._resp.read() if n is None or n < 0 else self._resp.read(n)
        except (OSError, http.client.HTTPException) as e:
            self._abort()
            raise ShroudConnectionError(f"the download from {self._transport.base_url} broke: {type(e).__name__}") from None
        if not data or self._resp.isclosed():
            self._finish()
        return data

    def __iter__(self) -> Iterator[bytes]:
        while True:
            data = self.read(self.chunk_size)
            if not data:
                return
            yield data

    def read_into(self, fileobj: Any) -> int:
        """Writes the rest of the answer to ``fileobj`` (a binary file object); the bytes written."""
        total = 0
        for piece in self:
            fileobj.write(piece)
            total += len(piece)
        return total



class LineStream(_HeldAnswer):
    """The JSON lines of one streamed answer, as dicts, read as they arrive.

    Iterate it, or use it as a context manager; :meth:`close` before the end
    drops the connection (the server then stops what it was streaming).
    """


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

