"""Fixtures: one real `shroud serve` for the whole session (temp home, free port).

The binary is $SHROUD_BIN, else the repository's target/debug/shroud
(sdk/python/../../target/debug/shroud). Without one, every test fails saying so.
"""

from __future__ import annotations

import http.server
import json
import sys
import threading
import uuid
from pathlib import Path
from typing import Iterator

import pytest

HERE = Path(__file__).resolve().parent
try:
    import shroud  # the installed package (pip install ./sdk/python)
except ImportError:  # pragma: no cover - running from the source tree
    sys.path.insert(0, str(HERE.parent / "src"))
    import shroud

from shroud import Shroud
from shroud.testing import LocalServer, find_binary

#: sdk/python/tests -> sdk/python -> sdk -> the repository root
REPO_BINARY = HERE.parents[2] / "target" / "debug" / "shroud"


@pytest.fixture(scope="session")
def server() -> Iterator[LocalServer]:
    try:
        binary = find_binary(REPO_BINARY)
    except FileNotFoundError as e:
        pytest.fail(f"cannot run the SDK tests: {e}", pytrace=False)
    srv = LocalServer(binary, args=["--fetch-allow", "127.0.0.0/8"])
    try:
        srv.start()
    except RuntimeError as e:
        srv.stop()
        pytest.fail(str(e), pytrace=False)
    yield srv
    srv.stop()


@pytest.fixture(scope="session")
def ci_token(server: LocalServer) -> str:
    return server.create_token("ci", grants=["ci:read", "ci:write"])


@pytest.fixture(scope="session")
def ws_token(server: LocalServer) -> str:
    """A token with a user (for the `user` scope) and the workspace and ci grants."""
    return server.create_token(
        "agent", grants=["workspace:read", "workspace:write", "ci:read", "ci:write"], user="alice"
    )


@pytest.fixture(scope="session")
def default_token(server: LocalServer) -> str:
    return server.create_token("app", grants=["default:read", "default:write", "workspace:read", "workspace:write"])


@pytest.fixture(scope="session")
def rt(server: LocalServer, ci_token: str) -> Iterator[Shroud]:
    client = Shroud(base_url=server.url, token=ci_token, vault="ci")
    yield client
    client.close()


@pytest.fixture(scope="session")
def ws(server: LocalServer, ws_token: str) -> Shroud:
    return Shroud(base_url=server.url, token=ws_token, vault="ci")


@pytest.fixture
def name() -> str:
    """A secret name no other test uses."""
    return "T_" + uuid.uuid4().hex[:10].upper()


@pytest.fixture
def sandbox(rt: Shroud) -> Iterator[shroud.Sandbox]:
    with rt.sandboxes.create(template="bash") as sb:
        yield sb


class _Echo(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode("utf-8", "replace") if length else ""
        data = json.dumps(
            {"method": self.command, "path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()}, "body": body}
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("X-Echo-Auth", self.headers.get("Authorization", ""))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PUT = _answer

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="session")
def echo_url() -> Iterator[str]:
    """An HTTP server on 127.0.0.1 that answers each request with its method, path, headers and body."""
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()
