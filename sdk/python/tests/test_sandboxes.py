"""Sandboxes: create, buffered and streamed exec, exit codes, E2B-style commands, delete."""

from __future__ import annotations

import threading
import time
from typing import List

import pytest

import shroud
from shroud import Shroud


@pytest.fixture
def secret(rt: Shroud, name: str) -> str:
    rt.secrets.set(name, "hunter2-super-secret")
    return name


def test_exec_masks_a_granted_secret(sandbox: shroud.Sandbox, secret: str) -> None:
    result = sandbox.exec(["sh", "-c", f"echo ${secret}"], secrets=[secret])
    assert isinstance(result, shroud.ExecResult)
    assert result.exit_code == 0 and result.ok
    assert result.stdout == f"<secret:{secret.lower()}>\n"
    assert "hunter2" not in result.stdout
    assert result.duration_ms is not None and result.timed_out is False


def test_exec_secret_under_another_env_name(sandbox: shroud.Sandbox, secret: str) -> None:
    result = sandbox.exec(["sh", "-c", "echo $S"], secrets={"S": secret})
    assert result.stdout == f"<secret:{secret.lower()}>\n"


def test_sandbox_wide_secrets_and_env(rt: Shroud, secret: str) -> None:
    with rt.sandboxes.create(template="bash", secrets=[secret], env={"GREETING": "hello"}) as sb:
        assert sb.id and sb.template == "bash"
        r = sb.exec(["sh", "-c", f'echo "$GREETING ${secret} $EXTRA"'], env={"EXTRA": "x"})
        assert r.stdout == f"hello <secret:{secret.lower()}> x\n"
        r = sb.exec(["sh", "-c", f'echo "$GREETING ${secret} $EXTRA"'], env={"EXTRA": "x"}, mask="stars")
        assert r.stdout == "hello ******** x\n"


def test_exit_code_propagation(sandbox: shroud.Sandbox) -> None:
    assert sandbox.exec(["sh", "-c", "exit 3"]).exit_code == 3
    assert sandbox.exec(["false"]).exit_code == 1
    assert sandbox.exec(["no-such-program-xyz"]).exit_code == 127
    r = sandbox.exec(["sh", "-c", "kill -TERM $$"])
    assert r.exit_code == 128 + 15


def test_stdout_stderr_stdin(sandbox: shroud.Sandbox) -> None:
    r = sandbox.exec(["sh", "-c", "cat; echo err >&2"], stdin="from stdin\n")
    assert r.stdout == "from stdin\n" and r.stderr == "err\n"


def test_timeout(sandbox: shroud.Sandbox) -> None:
    r = sandbox.exec(["sleep", "5"], timeout_ms=200)
    assert r.exit_code == 124 and r.timed_out


def test_working_directory_persists(sandbox: shroud.Sandbox) -> None:
    assert sandbox.exec(["sh", "-c", "echo kept > f.txt"]).ok
    assert sandbox.exec(["cat", "f.txt"]).stdout == "kept\n"


def test_streamed_exec_callbacks_in_order(sandbox: shroud.Sandbox, secret: str) -> None:
    out: List[str] = []
    err: List[str] = []
    script = f"echo one; sleep 0.05; echo two >&2; sleep 0.05; echo ${secret}; sleep 0.05; echo three; exit 5"
    result = sandbox.exec(["sh", "-c", script], secrets=[secret], on_stdout=out.append, on_stderr=err.append)
    assert result.exit_code == 5
    assert "".join(out) == f"one\n<secret:{secret.lower()}>\nthree\n"
    assert out[0] == "one\n" and len(out) >= 3  # chunks as they came, in order
    assert "".join(err) == "two\n"
    assert result.stdout == "".join(out) and result.stderr == "two\n"
    assert "hunter2" not in result.stdout


def test_stream_iterator(sandbox: shroud.Sandbox) -> None:
    with sandbox.stream(["sh", "-c", "echo a; sleep 0.05; echo b >&2; sleep 0.05; echo c; exit 2"]) as events:
        seen = [(e.stream, e.data) if isinstance(e, shroud.OutputEvent) else ("exit", e.exit_code) for e in events]
    assert seen == [("stdout", "a\n"), ("stderr", "b\n"), ("stdout", "c\n"), ("exit", 2)]
    assert events.result is not None and events.result.exit_code == 2
    assert events.result.stdout == "a\nc\n" and events.result.stderr == "b\n"


def test_stream_closed_early_stops_the_command(rt: Shroud, sandbox: shroud.Sandbox) -> None:
    stream = sandbox.stream(["sh", "-c", "echo first; sleep 0.4; touch late; sleep 20"])
    first = next(stream)
    assert isinstance(first, shroud.OutputEvent) and first.data == "first\n"
    stream.close()
    # The client is still usable, and the command was stopped: it never got to `touch late`.
    assert sandbox.exec(["echo", "after"]).stdout == "after\n"
    time.sleep(0.8)
    assert sandbox.exec(["ls"]).stdout == ""


def test_commands_run_e2b_style(sandbox: shroud.Sandbox, secret: str) -> None:
    chunks: List[str] = []
    result = sandbox.commands.run(
        ["sh", "-c", f"echo $GREETING; echo ${secret}"],
        envs={"GREETING": "hi"},
        secrets=[secret],
        on_stdout=chunks.append,
        timeout=10,
    )
    assert isinstance(result, shroud.CommandResult)
    assert result.exit_code == 0 and result.error is None
    assert "".join(chunks) == f"hi\n<secret:{secret.lower()}>\n"
    with pytest.raises(shroud.CommandExitError) as e:
        sandbox.commands.run(["sh", "-c", "echo out; exit 7"])
    assert e.value.exit_code == 7 and e.value.stdout == "out\n" and e.value.result.exit_code == 7
    assert isinstance(e.value, shroud.ShroudError)


def test_delete_and_context_manager(rt: Shroud) -> None:
    sb = rt.sandboxes.create(template="bash")
    assert sb.id in [s.id for s in rt.sandboxes.list()]
    info = next(s for s in rt.sandboxes.list() if s.id == sb.id)
    assert info.template == "bash" and info.vault == "ci"
    sb.delete()
    assert sb.id not in [s.id for s in rt.sandboxes.list()]
    with pytest.raises(shroud.NotFoundError):
        sb.exec(["true"])
    with pytest.raises(shroud.NotFoundError):
        sb.delete()
    with rt.sandboxes.create(template="bash") as sb2:
        sb2.exec(["true"])
    assert sb2.deleted and sb2.id not in [s.id for s in rt.sandboxes.list()]


def test_sandbox_of_a_vault_beyond_the_grant(rt: Shroud) -> None:
    with pytest.raises(shroud.PermissionDeniedError):
        rt.sandboxes.create(template="bash", vault="production")


def test_missing_secret_is_not_found_naming_it(sandbox: shroud.Sandbox) -> None:
    with pytest.raises(shroud.NotFoundError) as raised:
        sandbox.exec(["true"], secrets=["NO_SUCH_SECRET_XYZ"])
    assert "NO_SUCH_SECRET_XYZ" in raised.value.error


def test_other_token_cannot_see_the_sandbox(server, sandbox: shroud.Sandbox, ws: Shroud) -> None:
    with pytest.raises(shroud.NotFoundError):
        ws.sandboxes.connect(sandbox.id).exec(["true"])


def test_threads_share_one_client(rt: Shroud, sandbox: shroud.Sandbox) -> None:
    results: List[str] = []
    errors: List[BaseException] = []

    def work(i: int) -> None:
        try:
            for _ in range(3):
                results.append(sandbox.exec(["echo", str(i)]).stdout)
                rt.secrets.list()
        except BaseException as e:  # pragma: no cover
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert sorted(results) == sorted(f"{i}\n" for i in range(4) for _ in range(3))


def test_calls_from_a_stream_callback(rt: Shroud, sandbox: shroud.Sandbox) -> None:
    # A callback may call the API while the stream holds its connection.
    seen: List[int] = []
    sandbox.exec(["sh", "-c", "echo x"], on_stdout=lambda _: seen.append(len(rt.secrets.list())))
    assert len(seen) == 1
