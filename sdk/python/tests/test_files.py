"""Sandbox files (raw bytes, streamed) and lifetime, against a real server."""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
import time
import tracemalloc
from datetime import timedelta
from pathlib import PurePosixPath
from typing import Iterator

import pytest

import shroud
from shroud import Shroud

BINARY = bytes(range(256)) * 4 + b"\x00\xff\xfe\r\n\x80"
SECRET_VALUE = "hunter2-file-secret-value"


@pytest.fixture
def secret(rt: Shroud, name: str) -> str:
    rt.secrets.set(name, SECRET_VALUE)
    return name


@pytest.fixture(scope="module")
def tiny_template(server) -> str:
    """A template whose sandboxes have a 2 MiB disk (in the test server's home)."""
    folder = server.home / "sandbox-templates"
    folder.mkdir(exist_ok=True)
    (folder / "tiny-disk.toml").write_text(
        'description = "a 2 MiB disk"\n[runtime]\ninterpreter = "bash"\n'
        "[limits]\ndisk_mb = 2\n[network]\nenabled = false\n"
    )
    return "tiny-disk"


def test_write_read_round_trip_binary_and_nested(sandbox: shroud.Sandbox) -> None:
    entry = sandbox.files.write("deep/er/data.bin", BINARY)
    assert isinstance(entry, shroud.FileEntry)
    assert entry.path == "deep/er/data.bin" and entry.name == "data.bin" and entry.size == len(BINARY)
    assert sandbox.files.read("deep/er/data.bin") == BINARY
    # Commands see the same file.
    assert sandbox.exec(["sh", "-c", "wc -c < deep/er/data.bin"]).stdout.strip() == str(len(BINARY))
    # str (UTF-8), a PathLike, bytearray and memoryview bodies.
    sandbox.files.write(PurePosixPath("deep/text.txt"), "héllo\n")
    assert sandbox.files.read_text("deep/text.txt") == "héllo\n"
    sandbox.files.write("ba.bin", bytearray(b"\x01\x02"))
    sandbox.files.write("mv.bin", memoryview(b"\x03\x04"))
    assert sandbox.files.read("ba.bin") + sandbox.files.read("mv.bin") == b"\x01\x02\x03\x04"
    # Overwrite, and an empty file.
    sandbox.files.write("deep/text.txt", b"")
    assert sandbox.files.read("deep/text.txt") == b""


def test_a_file_a_command_wrote(sandbox: shroud.Sandbox) -> None:
    assert sandbox.exec(["sh", "-c", "mkdir -p out && printf 'made\\n' > out/r.txt"]).ok
    assert sandbox.files.read("out/r.txt") == b"made\n"


def test_list(sandbox: shroud.Sandbox) -> None:
    sandbox.files.write("top.txt", b"12345")
    sandbox.files.write("dir/inner.txt", b"x")
    assert sandbox.exec(["ln", "-s", "top.txt", "link"]).ok
    top = {e.name: e for e in sandbox.files.list()}
    assert {"top.txt", "dir", "link"} <= set(top)
    assert top["top.txt"].type == "file" and top["top.txt"].size == 5 and top["top.txt"].is_file
    assert top["dir"].type == "directory" and top["dir"].is_dir
    assert top["link"].type == "symlink"
    assert [(e.name, e.path) for e in sandbox.files.list("dir")] == [("inner.txt", "dir/inner.txt")]
    assert {e.name for e in sandbox.files.list(".")} == set(top)
    with pytest.raises(shroud.NotFoundError):
        sandbox.files.list("no-such-dir")
    assert sandbox.files.exists("dir/inner.txt") and not sandbox.files.exists("dir/nope")


def test_remove(sandbox: shroud.Sandbox) -> None:
    sandbox.files.write("gone.txt", b"x")
    sandbox.files.write("tree/a/b.txt", b"y")
    sandbox.files.remove("gone.txt")
    sandbox.files.remove("tree")  # recursively
    names = {e.name for e in sandbox.files.list()}
    assert "gone.txt" not in names and "tree" not in names
    with pytest.raises(shroud.NotFoundError):
        sandbox.files.remove("gone.txt")
    with pytest.raises(shroud.NotFoundError):
        sandbox.files.read("gone.txt")


@pytest.mark.parametrize("path", ["../x", "/etc/passwd", "a/../../x"])
def test_a_path_that_escapes_is_refused(sandbox: shroud.Sandbox, path: str) -> None:
    with pytest.raises(shroud.ValidationError) as e:
        sandbox.files.read(path)
    assert e.value.status == 400
    with pytest.raises(shroud.ValidationError):
        sandbox.files.write(path, b"x")
    with pytest.raises(shroud.ValidationError):
        sandbox.files.remove(path)
    with pytest.raises(shroud.ValidationError):
        sandbox.files.list(path)


def test_a_link_out_is_refused(sandbox: shroud.Sandbox) -> None:
    assert sandbox.exec(["ln", "-s", "/etc", "etc-link"]).ok
    with pytest.raises(shroud.ValidationError):
        sandbox.files.read("etc-link/passwd")
    with pytest.raises(shroud.ValidationError):
        sandbox.files.write("etc-link/evil", b"x")


def test_a_directory_cannot_be_read(sandbox: shroud.Sandbox) -> None:
    sandbox.files.write("d/f", b"x")
    with pytest.raises(shroud.ValidationError):
        sandbox.files.read("d")


def test_a_granted_secret_reads_back_masked(rt: Shroud, secret: str) -> None:
    with rt.sandboxes.create(template="bash", secrets=[secret]) as sb:
        assert sb.exec(["sh", "-c", f'echo "key=${secret}" > env.txt']).ok
        assert sb.files.read("env.txt") == f"key=<secret:{secret.lower()}>\n".encode()
        # Written through the files API too: masked on the way out.
        sb.files.write("copy.txt", f"a {SECRET_VALUE} b".encode())
        assert sb.files.read_text("copy.txt") == f"a <secret:{secret.lower()}> b"
        buf = io.BytesIO()
        sb.files.read_into("copy.txt", buf)
        assert SECRET_VALUE.encode() not in buf.getvalue()


def test_a_secret_granted_to_one_exec_stays_masked(sandbox: shroud.Sandbox, secret: str) -> None:
    assert sandbox.exec(["sh", "-c", f"echo ${secret} > once.txt"], secrets=[secret]).ok
    assert sandbox.files.read("once.txt") == f"<secret:{secret.lower()}>\n".encode()


def _chunks(data: bytes, size: int) -> Iterator[bytes]:
    for at in range(0, len(data), size):
        yield data[at : at + size]


def test_8_mib_streamed_round_trip(sandbox: shroud.Sandbox) -> None:
    data = os.urandom(8 * 1024 * 1024)
    digest = hashlib.sha256(data).hexdigest()
    # An iterator: chunked transfer encoding.
    assert sandbox.files.write("big/chunked.bin", _chunks(data, 100_000)).size == len(data)
    # A file on disk: its length is known, and it is read as it is sent.
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "src.bin")
        with open(src, "wb") as f:
            f.write(data)
        with open(src, "rb") as f:
            assert sandbox.files.write("big/file.bin", f).size == len(data)
        # Downloads streamed into a file.
        dst = os.path.join(tmp, "dst.bin")
        with open(dst, "wb") as f:
            assert sandbox.files.read_into("big/file.bin", f) == len(data)
        with open(dst, "rb") as f:
            assert hashlib.sha256(f.read()).hexdigest() == digest
    # An iterator with a known length; then read chunk by chunk.
    sandbox.files.write("big/sized.bin", _chunks(data, 1 << 20), length=len(data))
    h = hashlib.sha256()
    with sandbox.files.stream("big/chunked.bin") as s:
        for piece in s:
            h.update(piece)
    assert h.hexdigest() == digest
    assert hashlib.sha256(sandbox.files.read("big/sized.bin")).hexdigest() == digest
    assert sandbox.exec(["sh", "-c", "sha256sum big/chunked.bin | cut -d' ' -f1"]).stdout.strip() == digest


def test_a_streamed_upload_and_download_are_not_gathered_in_memory(sandbox: shroud.Sandbox) -> None:
    size = 32 * 1024 * 1024
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "src.bin")
        with open(src, "wb") as f:
            f.truncate(size)
        tracemalloc.start()
        try:
            with open(src, "rb") as f:
                sandbox.files.write("big/sparse.bin", f)
            with open(os.path.join(tmp, "back.bin"), "wb") as f:
                assert sandbox.files.read_into("big/sparse.bin", f) == size
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert peak < 4 * 1024 * 1024, f"{peak} bytes allocated at once while streaming 32 MiB"
    sandbox.files.remove("big/sparse.bin")


def test_a_source_that_fails_raises_its_own_error(sandbox: shroud.Sandbox) -> None:
    def failing() -> Iterator[bytes]:
        yield b"x" * 1024
        raise RuntimeError("the source broke")

    with pytest.raises(RuntimeError, match="the source broke"):
        sandbox.files.write("broken.bin", failing())
    with pytest.raises(TypeError):
        sandbox.files.write("broken.bin", [b"x", 42])  # type: ignore[list-item]
    assert "broken.bin" not in {e.name for e in sandbox.files.list()}
    assert sandbox.exec(["echo", "still fine"]).stdout == "still fine\n"


def test_a_wrong_length_is_refused_and_nothing_is_written(sandbox: shroud.Sandbox) -> None:
    with pytest.raises(ValueError):
        sandbox.files.write("short.bin", iter([b"abc"]), length=10)
    with pytest.raises(TypeError):
        sandbox.files.write("bad.bin", 42)  # type: ignore[arg-type]
    assert "short.bin" not in {e.name for e in sandbox.files.list()}
    assert sandbox.exec(["true"]).ok  # the client goes on working


def test_a_full_disk_is_413(rt: Shroud, tiny_template: str) -> None:
    with rt.sandboxes.create(template=tiny_template) as sb:
        with pytest.raises(shroud.PayloadTooLargeError) as e:
            sb.files.write("big.bin", _chunks(b"\0" * (4 << 20), 256 * 1024))
        assert e.value.status == 413 and isinstance(e.value, shroud.ValidationError)
        with pytest.raises(shroud.PayloadTooLargeError):
            sb.files.write("big.bin", b"\0" * (4 << 20))
        assert "big.bin" not in {x.name for x in sb.files.list()}
        assert sb.files.write("small.txt", b"ok").size == 2  # still usable


def test_files_of_a_missing_sandbox_are_404(rt: Shroud) -> None:
    gone = rt.sandboxes.connect("00000000-0000-0000-0000-000000000000")
    with pytest.raises(shroud.NotFoundError):
        gone.files.write("x", b"x")
    with pytest.raises(shroud.NotFoundError):
        gone.files.read("x")
    with pytest.raises(shroud.NotFoundError):
        gone.info()
    assert gone.is_running() is False


# -- lifetime ---------------------------------------------------------------


def test_info_and_set_timeout(rt: Shroud) -> None:
    with rt.sandboxes.create(template="bash") as sb:
        info = sb.info()
        assert isinstance(info, shroud.SandboxInfo)
        assert info.id == sb.id and info.template == "bash" and info.vault == "ci"
        assert info.timeout_s == 3600 and info.expires_at and info.created_at
        before = info.expires_at_datetime
        assert before is not None
        changed = sb.set_timeout(7200)
        assert changed.timeout_s == 7200
        after = changed.expires_at_datetime
        assert after is not None and after - before > timedelta(minutes=50)
        assert sb.info().timeout_s == 7200 and sb.info().expires_at == changed.expires_at
        assert sb.get_info().id == sb.id and sb.is_running()
        assert rt.sandboxes.get(sb.id).timeout_s == 7200
        with pytest.raises(shroud.ValidationError):
            sb.set_timeout(0)
        with pytest.raises(shroud.ValidationError):
            sb.set_timeout(10**9)


def test_create_with_a_timeout_renewed_by_use(rt: Shroud) -> None:
    with rt.sandboxes.create(template="bash", timeout=60) as sb:
        first = sb.info()
        assert first.timeout_s == 60
        time.sleep(1.1)
        sb.exec(["true"])  # an exec renews it
        renewed = sb.info()
        assert renewed.expires_at_datetime > first.expires_at_datetime  # type: ignore[operator]


def test_an_idle_sandbox_with_timeout_2_disappears(rt: Shroud) -> None:
    sb = rt.sandboxes.create(template="bash", timeout=2)
    assert sb.info().timeout_s == 2
    deadline = time.monotonic() + 12
    while time.monotonic() < deadline:
        try:
            sb.info()  # does not renew it
        except shroud.NotFoundError:
            break
        time.sleep(0.25)
    else:
        sb.close()
        pytest.fail("the sandbox still exists 12 s after its 2 s timeout")
    assert not sb.is_running()
    assert sb.id not in [s.id for s in rt.sandboxes.list()]
    with pytest.raises(shroud.NotFoundError):
        sb.files.read("x")
    sb.close()  # already gone: fine
