"""The background-command handle's own mechanics, against a small fake of the
/processes routes (the shapes of /work/notes/sdk-contract-15.md). The real
server is exercised by test_background.py; this only checks the client side:
one followed log shared by iteration and wait(), callbacks, kill, list.
"""

from __future__ import annotations

import http.server
import json
import threading
import time
from typing import Any, Dict, Iterator, List

import pytest

import shroud
from shroud import Shroud


class _Fake(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    state: Dict[str, Any] = {}

    def _json(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.state["bodies"].append(body)
        assert body.get("background") is True
        self._json(200, {"process_id": 7})

    def do_DELETE(self) -> None:
        if self.path.endswith("/processes/7"):
            self.state["killed"].set()
            self._json(200, {"process_id": 7, "stopped": True})
        else:
            self._json(404, {"error": "no such process", "errors": []})

    def do_GET(self) -> None:
        if self.path.endswith("/processes"):
            status = "stopped" if self.state["killed"].is_set() else "running"
            self._json(200, {"processes": [{"process_id": 7, "command": ["sh", "-c", "x"], "status": status,
                                            "exit_code": None, "started_at": "t", "ended_at": None}]})
            return
        assert "/processes/7/log" in self.path and "follow=true" in self.path
        self.state["follows"] += 1
        self.send_response(200)
        self.send_header("Content-Type", "application/x-ndjson")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

        def line(obj: Dict[str, Any]) -> None:
            data = (json.dumps(obj) + "\n").encode()
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.wfile.flush()

        for i in range(1000):
            if self.state["killed"].is_set():
                break
            # As the server writes a background log: one line per event, its newline dropped.
            line({"ts": "t", "instance": "7", "stream": "stdout" if i % 2 == 0 else "stderr", "data": f"line {i}"})
            time.sleep(0.02)
        line({"ts": "t", "event": "exit", "exit_code": 143, "signal": 15})
        self.wfile.write(b"0\r\n\r\n")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def fake() -> Iterator[Dict[str, Any]]:
    state: Dict[str, Any] = {"bodies": [], "killed": threading.Event(), "follows": 0}
    handler = type("F", (_Fake,), {"state": state})
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
    state["url"] = f"http://127.0.0.1:{srv.server_address[1]}"
    yield state
    srv.shutdown()
    srv.server_close()


def test_handle_iteration_wait_kill_list(fake: Dict[str, Any]) -> None:
    rt = Shroud(base_url=fake["url"], token="t")
    sb = rt.sandboxes.connect("sb1")
    out: List[str] = []
    handle = sb.commands.run("x", background=True, envs={"A": "1"}, on_stdout=out.append, timeout=30)
    assert handle.pid == 7
    assert fake["bodies"] == [{"command": "x", "env": {"A": "1"}, "timeout_ms": 30000, "background": True}]
    it = iter(handle)
    first = [next(it) for _ in range(3)]
    assert [(e.stream, e.data) for e in first] == [("stdout", "line 0\n"), ("stderr", "line 1\n"), ("stdout", "line 2\n")]
    assert sb.commands.list()[0].running
    assert handle.kill() is True
    result = handle.wait()
    assert result.exit_code == 143 and result.signal == 15
    assert result.status == "stopped"  # not in the exit line: asked of the list
    assert result.stdout.startswith("line 0\nline 2\n")  # events read by the iteration count too
    assert "".join(out) == result.stdout
    assert fake["follows"] == 1  # one log for the iteration and wait()
    assert handle.wait() is result
    assert sb.commands.kill(8) is False
