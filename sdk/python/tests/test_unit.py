"""The client's own mechanics, against small local HTTP servers (no shroud needed)."""

from __future__ import annotations

import http.server
import json
import threading
import time
from typing import Iterator, List, Set

import pytest

import shroud
from shroud import Shroud
from shroud.errors import error_for_status


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    peers: Set[int] = set()
    close_after = False

    def do_GET(self) -> None:
        type(self).peers.add(self.client_address[1])
        if self.path.startswith("/stream"):
            self.send_response(200)
            self.send_header("Content-Type", "application/x-ndjson")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for i in range(3):
                line = (json.dumps({"stream": "stdout", "data": f"{i}\n", "t": time.monotonic()}) + "\n").encode()
                self.wfile.write(b"%x\r\n%s\r\n" % (len(line), line))
                self.wfile.flush()
                time.sleep(0.1)
            self.wfile.write(b"0\r\n\r\n")
            return
        if self.path.startswith("/error"):
            data = json.dumps({"error": "nope", "errors": [{"name": "A", "error": "bad"}]}).encode()
            self.send_response(int(self.path.rsplit("/", 1)[1]))
        else:
            data = json.dumps({"ok": True, "path": self.path}).encode()
            self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Retry-After", "2")
        self.end_headers()
        self.wfile.write(data)
        if type(self).close_after:
            self.close_connection = True  # closed, though the answer said keep-alive

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def local() -> Iterator[type]:
    handler = type("H", (_Handler,), {"peers": set(), "close_after": False})
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
    handler.url = f"http://127.0.0.1:{srv.server_address[1]}"  # type: ignore[attr-defined]
    yield handler
    srv.shutdown()
    srv.server_close()


def test_keep_alive_reuses_one_connection(local: type) -> None:
    rt = Shroud(base_url=local.url, token="t")  # type: ignore[attr-defined]
    for i in range(5):
        assert rt.request("GET", f"/x{i}")["path"] == f"/x{i}"
    assert len(local.peers) == 1


def test_a_connection_closed_by_the_server_is_replaced(local: type) -> None:
    local.close_after = True
    rt = Shroud(base_url=local.url, token="t")  # type: ignore[attr-defined]
    for i in range(3):
        assert rt.request("GET", f"/y{i}")["ok"] is True
        time.sleep(0.05)
    assert len(local.peers) == 3


def test_lines_arrive_as_they_are_written(local: type) -> None:
    rt = Shroud(base_url=local.url, token="t")  # type: ignore[attr-defined]
    got: List[float] = []
    with rt._transport.stream("GET", "/stream") as lines:
        for line in lines:
            got.append(time.monotonic() - line["t"])
    assert len(got) == 3
    assert max(got) < 0.09  # each line read before the next was written
    assert rt.request("GET", "/after")["ok"] is True
    assert len(local.peers) == 1  # the stream's connection was given back


@pytest.mark.parametrize(
    "status,cls",
    [
        (400, shroud.ValidationError),
        (401, shroud.AuthenticationError),
        (403, shroud.PermissionDeniedError),
        (404, shroud.NotFoundError),
        (409, shroud.ConflictError),
        (415, shroud.ShroudError),
        (422, shroud.ValidationError),
        (429, shroud.RateLimitError),
        (500, shroud.ServerError),
        (503, shroud.ServerError),
    ],
)
def test_error_classes(local: type, status: int, cls: type) -> None:
    rt = Shroud(base_url=local.url, token="t")  # type: ignore[attr-defined]
    with pytest.raises(cls) as e:
        rt.request("GET", f"/error/{status}")
    assert type(e.value) is cls
    assert e.value.status == status and e.value.error == "nope"
    assert e.value.errors == [{"name": "A", "error": "bad"}]
    if status in (429, 503):
        assert e.value.retry_after == 2.0


def test_partial_set_error_fields() -> None:
    body = {"error": "1 failed", "errors": [{"name": "B", "error": "empty"}], "set_secrets": ["A"], "versions": {"A": 3}}
    e = error_for_status(400, body)
    assert isinstance(e, shroud.PartialSetError) and isinstance(e, shroud.ValidationError)
    assert e.set_secrets == ["A"] and e.versions == {"A": 3}
    assert "set_secrets=['A']" in repr(e)


def test_no_token_or_value_in_reprs() -> None:
    rt = Shroud(base_url="http://127.0.0.1:1", token="shr_TOPSECRETTOKEN")
    assert "TOPSECRET" not in repr(rt) and "TOPSECRET" not in str(rt.__dict__.get("secrets"))
    rendered = shroud.Rendered.from_json(
        {"vault": "v", "mode": "Full", "secrets": [{"name": "K", "version": 1, "value": "the-plain-value"}]}
    )
    assert "the-plain-value" not in repr(rendered) and "the-plain-value" not in repr(rendered["K"])
    assert rendered.values() == {"K": "the-plain-value"}


def test_client_side_value_errors_do_not_show_the_value() -> None:
    rt = Shroud(base_url="http://127.0.0.1:1", token="t")
    with pytest.raises(TypeError) as e:
        rt.secrets.set_many([{"name": "A", "secret": 987654321}])
    assert "987654321" not in str(e.value) and "'A'" in str(e.value)
    with pytest.raises(ValueError) as e2:
        rt.secrets.set("A", b"\xffnot-utf8-value")
    assert "not-utf8-value" not in str(e2.value)


def test_defaults_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHROUD_URL", "http://example.invalid:9999/")
    monkeypatch.setenv("SHROUD_TOKEN", "tok")
    monkeypatch.setenv("SHROUD_VAULT", "staging")
    rt = Shroud()
    assert rt.base_url == "http://example.invalid:9999" and rt.vault == "staging"
    monkeypatch.delenv("SHROUD_URL")
    monkeypatch.delenv("SHROUD_VAULT")
    assert Shroud().base_url == shroud.DEFAULT_URL and Shroud().vault == "default"


def test_exec_result_and_exit_event_parsing() -> None:
    r = shroud.ExecResult.from_json({"code": 4, "stdout": "x", "stdout_base64": "/w=="})
    assert r.exit_code == 4 and not r.ok and r.stdout_bytes == b"\xff"
    ev = shroud.ExitEvent.from_json({"event": "exit", "code": 2, "exit_code": 3, "signal": None})
    assert ev.exit_code == 3
    ref = shroud.SecretRef("$secret:abc", "2030-01-01T00:00:00Z")
    assert ref == "$secret:abc" and json.dumps({"r": ref}) == '{"r": "$secret:abc"}'
