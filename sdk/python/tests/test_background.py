"""Background commands (``commands.run(..., background=True)``), against a real server."""

from __future__ import annotations

import time
from typing import List

import pytest

import shroud
from shroud import Shroud

TICKS = "while true; do echo tick; sleep 0.2; done"


def _wait_for(predicate, timeout: float = 10.0, every: float = 0.2):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(every)


def test_ticks_followed_killed_and_listed(sandbox: shroud.Sandbox) -> None:
    started = time.monotonic()
    handle = sandbox.commands.run(TICKS, background=True)
    assert time.monotonic() - started < 5  # answered at once
    assert isinstance(handle, shroud.CommandHandle) and isinstance(handle.pid, int)

    # The handle's events, as they come.
    events = iter(handle)
    seen: List[shroud.OutputEvent] = []
    while len(seen) < 3:
        event = next(events)
        assert isinstance(event, shroud.OutputEvent)
        seen.append(event)
    assert "".join(e.data for e in seen).startswith("tick\ntick\n")
    assert all(e.stream == "stdout" for e in seen)

    listed = {p.process_id: p for p in sandbox.commands.list()}
    assert handle.pid in listed
    assert listed[handle.pid].status == "running" and listed[handle.pid].running
    assert listed[handle.pid].started_at and listed[handle.pid].ended_at is None

    # Other commands run while it does.
    assert sandbox.exec(["echo", "beside"]).stdout == "beside\n"

    assert handle.kill() is True
    result = handle.wait()
    assert isinstance(result, shroud.ExecResult)
    assert result.status == "stopped"
    assert result.exit_code != 0
    assert result.stdout.startswith("tick\n")
    assert handle.exit_code == result.exit_code

    after = {p.process_id: p for p in sandbox.commands.list()}
    assert after[handle.pid].status == "stopped" and after[handle.pid].ended_at
    assert sandbox.commands.kill(999_999) is False


def test_a_background_server_is_reached_over_the_loopback(sandbox: shroud.Sandbox) -> None:
    sandbox.files.write("site/hello.txt", b"hello from the background\n")
    with sandbox.commands.run(
        ["python3", "-m", "http.server", "8765", "--bind", "127.0.0.1", "--directory", "site"],
        background=True,
    ) as server:
        fetch = [
            "python3",
            "-c",
            "import urllib.request as u; print(u.urlopen('http://127.0.0.1:8765/hello.txt').read().decode(), end='')",
        ]

        def fetched():  # type: ignore[no-untyped-def]
            r = sandbox.exec(fetch, timeout_ms=5000)
            return r if r.ok else None

        answer = _wait_for(fetched, timeout=15)
        assert answer, "the background server never answered on 127.0.0.1:8765"
        assert answer.stdout == "hello from the background\n"
        curl = sandbox.exec(["curl", "-sf", "http://127.0.0.1:8765/hello.txt"], timeout_ms=5000)
        assert curl.ok and curl.stdout == "hello from the background\n"
        assert any(p.process_id == server.pid and p.status == "running" for p in sandbox.commands.list())
        # The access log comes on stderr.
        assert any(isinstance(e, shroud.OutputEvent) and e.stream == "stderr" and "hello.txt" in e.data for e in server)
    # Leaving the block killed it.
    assert _wait_for(
        lambda: any(p.process_id == server.pid and p.status != "running" for p in sandbox.commands.list())
    )
    assert not sandbox.exec(["curl", "-sf", "http://127.0.0.1:8765/hello.txt"], timeout_ms=5000).ok


def test_env_secrets_masking_and_callbacks(rt: Shroud, sandbox: shroud.Sandbox, name: str) -> None:
    rt.secrets.set(name, "bg-secret-value-0123456789")
    out: List[str] = []
    err: List[str] = []
    handle = sandbox.commands.run(
        f'echo "$GREETING ${name}"; echo oops >&2; exit 3',
        background=True,
        envs={"GREETING": "hi"},
        secrets=[name],
        on_stdout=out.append,
        on_stderr=err.append,
    )
    result = handle.wait()
    assert result.exit_code == 3 and result.status == "exited"
    assert result.stdout == f"hi <secret:{name.lower()}>\n" and result.stderr == "oops\n"
    assert "".join(out) == result.stdout and "".join(err) == "oops\n"
    assert "bg-secret-value" not in result.stdout
    with pytest.raises(shroud.CommandExitError) as e:
        handle.wait(check=True)
    assert e.value.exit_code == 3
    info = handle.info()
    assert info.status == "exited" and info.exit_code == 3 and info.command
    # Its log can be read again from the start by another handle.
    again = sandbox.commands.connect(handle.pid)
    assert [ev.data for ev in again if isinstance(ev, shroud.OutputEvent) and ev.stream == "stdout"] == [
        f"hi <secret:{name.lower()}>\n"
    ]


def test_a_background_command_ends_with_its_sandbox(rt: Shroud) -> None:
    sb = rt.sandboxes.create(template="bash")
    handle = sb.commands.run(TICKS, background=True)
    next(iter(handle))
    sb.delete()
    with pytest.raises(shroud.NotFoundError):
        sb.commands.list()
    handle.disconnect()
