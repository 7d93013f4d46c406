"""A real ``shroud serve`` for tests and benchmarks: a temp home, a free port.

    from shroud.testing import LocalServer

    with LocalServer() as server:            # $SHROUD_BIN, else `shroud` on PATH
        token = server.create_token("ci", grants=["ci:read", "ci:write"])
        rt = server.client(token, vault="ci")
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any, Iterable, List, Optional, Sequence, Union

from .client import Shroud

__all__ = ["LocalServer", "find_binary", "free_port"]


def find_binary(default: Optional[Union[str, Path]] = None) -> Path:
    """``$SHROUD_BIN``, else ``default``, else ``shroud`` on ``PATH``.

    Raises ``FileNotFoundError`` (saying where it looked) when none exists.
    """
    looked: List[str] = []
    env = os.environ.get("SHROUD_BIN")
    candidates: List[Optional[str]] = []
    if env:
        candidates.append(env)
        looked.append(f"$SHROUD_BIN={env}")
    else:
        if default is not None:
            candidates.append(str(default))
            looked.append(str(default))
        candidates.append(shutil.which("shroud"))
        looked.append("`shroud` on PATH")
    for c in candidates:
        if c and os.path.isfile(c) and os.access(c, os.X_OK):
            return Path(c).resolve()
    raise FileNotFoundError(
        "no shroud binary found (looked at: " + ", ".join(looked) + "); build it with `cargo build` "
        "or point $SHROUD_BIN at one"
    )


def free_port() -> int:
    """A TCP port of 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LocalServer:
    """``shroud --home HOME serve --listen 127.0.0.1:PORT`` in the background.

    ``home`` defaults to a new temp directory (removed by :meth:`stop`);
    ``args`` are more ``serve`` flags (``--fetch-allow 127.0.0.0/8``, ...).
    """

    def __init__(
        self,
        binary: Optional[Union[str, Path]] = None,
        home: Optional[Union[str, Path]] = None,
        args: Sequence[str] = (),
        start_timeout: float = 20.0,
    ) -> None:
        self.binary = Path(binary) if binary is not None else find_binary()
        if not self.binary.is_file():
            raise FileNotFoundError(f"no shroud binary at {self.binary}")
        self._own_home = home is None
        self.home = Path(home) if home is not None else Path(tempfile.mkdtemp(prefix="shroud-sdk-"))
        self.args = list(args)
        self.start_timeout = start_timeout
        self.port = 0
        self.process: "Optional[subprocess.Popen[bytes]]" = None
        self.log_path = self.home / "serve.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def cli(self, *args: str, input: Optional[str] = None, check: bool = True) -> "subprocess.CompletedProcess[str]":
        """Runs ``shroud --home HOME ARGS...``; its output as text."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("SHROUD_")}
        proc = subprocess.run(
            [str(self.binary), "--home", str(self.home), *args],
            input=input,
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
        )
        if check and proc.returncode != 0:
            # The arguments may hold a value: name only the command.
            raise RuntimeError(f"`shroud {args[0] if args else ''}` failed ({proc.returncode}): {proc.stderr.strip()}")
        return proc

    def create_token(self, name: str, grants: Iterable[str] = (), user: Optional[str] = None) -> str:
        """``shroud token create NAME --grant VAULT:read|write ... [--user NAME]``: the token."""
        args = ["token", "create", name]
        for g in grants:
            args += ["--grant", g]
        if user:
            args += ["--user", user]
        return str(self.cli(*args).stdout).strip()

    def set_secret(self, name: str, value: str, vault: str = "default") -> None:
        """``shroud secret set NAME --vault V`` with the value on stdin."""
        self.cli("secret", "set", name, "--vault", vault, input=value)

    def client(self, token: Optional[str] = None, **kwargs: Any) -> Shroud:
        return Shroud(base_url=self.url, token=token, **kwargs)

    def start(self) -> "LocalServer":
        env = {k: v for k, v in os.environ.items() if not k.startswith("SHROUD_")}
        env.setdefault("RUST_LOG", "warn")
        last_error = ""
        for _attempt in range(3):  # a port taken between free_port() and bind: another one
            self.port = free_port()
            log = open(self.log_path, "ab")
            try:
                self.process = subprocess.Popen(
                    [str(self.binary), "--home", str(self.home), "serve", "--listen", f"127.0.0.1:{self.port}", *self.args],
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=env,
                )
            finally:
                log.close()
            deadline = time.monotonic() + self.start_timeout
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    break
                try:
                    with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                        return self
                except OSError:
                    time.sleep(0.02)
            last_error = self.log_tail()
            self._kill()
        raise RuntimeError(f"shroud serve did not start; its log ends with:\n{last_error}")

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def _kill(self) -> None:
        p, self.process = self.process, None
        if p is None or p.poll() is not None:
            return
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()

    def stop(self) -> None:
        """SIGTERM (SIGKILL after 10 s); removes a temp home."""
        self._kill()
        if self._own_home:
            shutil.rmtree(self.home, ignore_errors=True)

    def __enter__(self) -> "LocalServer":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
