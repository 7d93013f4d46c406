"""Runs every ```python block of README.md, in order, against the test server.

A `# -> TEXT` comment on a line says that the block prints TEXT (somewhere).
Blocks share one namespace, as a reader's session would.
"""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path
from typing import Any, Dict, List, Tuple

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"


def _blocks() -> List[Tuple[int, str]]:
    text = README.read_text()
    blocks = []
    for m in re.finditer(r"^```python\n(.*?)^```", text, re.S | re.M):
        line = text.count("\n", 0, m.start()) + 1
        blocks.append((line, m.group(1)))
    return blocks


BLOCKS = _blocks()
NAMESPACE: Dict[str, Any] = {}


def test_readme_has_examples() -> None:
    code = "\n".join(b for _, b in BLOCKS)
    for needle in (
        "rt.secrets.set('DATABASE_URL'",
        "sandbox.exec('node app.js', secrets=['DATABASE_URL'])",
        "rt.deployments.create({",
        "rt.agents.run('my-bot', message=",
        "sandbox.commands.run(",
        "sandbox.files.write(",
        "sandbox.files.read_into(",
        "sandbox.set_timeout(",
        "background=True",
        "sandbox.commands.list()",
    ):
        assert needle in code, needle


@pytest.mark.parametrize("line,code", BLOCKS, ids=[f"README.md:{line}" for line, _ in BLOCKS])
def test_readme_block(line: int, code: str, server, default_token: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHROUD_URL", server.url)
    monkeypatch.setenv("SHROUD_TOKEN", default_token)
    monkeypatch.delenv("SHROUD_VAULT", raising=False)
    expected = [m.group(1).strip() for m in re.finditer(r"#\s*->\s*(.+)$", code, re.M)]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, f"README.md:{line}", "exec"), NAMESPACE)
    printed = out.getvalue()
    for text in expected:
        assert text in printed, f"README.md:{line}: {text!r} not printed; got:\n{printed}"
