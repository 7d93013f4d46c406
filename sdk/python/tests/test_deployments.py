"""Deployments (services), agent runs and runs."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any, Dict, List

import pytest

import shroud
from shroud import Shroud


def _slug(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _wait_for_log(rt: Shroud, slug: str, text: str, timeout: float = 10.0) -> List[Dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        with rt.deployments.logs(slug) as lines:
            got = list(lines)
        if any(text in (line.get("data") or "") for line in got):
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"{text!r} not in the log of {slug}: {got}")
        time.sleep(0.05)


@pytest.fixture
def secret(rt: Shroud, name: str) -> str:
    rt.secrets.set(name, "deploy-secret-value")
    return name


def test_service_lifecycle(rt: Shroud, secret: str) -> None:
    slug = _slug("web")
    created = rt.deployments.create(
        {"templateSlug": "bash", "apiSlug": slug, "command": ["sh", "-c", f"echo hello ${secret}; sleep 30"], "secrets": [secret]}
    )
    assert created == slug
    try:
        listed = rt.deployments.get(slug)
        assert listed["mode"] == "service" and listed["vault"] == "ci" and listed["template"] == "bash"
        assert slug in [d["slug"] for d in rt.deployments.list()]
        lines = _wait_for_log(rt, slug, "hello")
        data = [l["data"] for l in lines if "data" in l]
        assert f"hello <secret:{secret.lower()}>" in data
        assert not any("deploy-secret-value" in json.dumps(l) for l in lines)
        with rt.deployments.logs(slug, tail=1) as tail:
            assert len(list(tail)) == 1
        # follow: the stream stays open; closing it early is fine.
        with rt.deployments.logs(slug, follow=True) as follow:
            first = next(follow)
            assert "ts" in first
        assert rt.deployments.restart(slug)["slug"] == slug
        assert rt.deployments.stop(slug)["slug"] == slug
        assert rt.deployments.start(slug)["slug"] == slug
    finally:
        assert rt.deployments.delete(slug)["deleted"] is True
    assert slug not in [d["slug"] for d in rt.deployments.list()]
    with pytest.raises(shroud.NotFoundError):
        rt.deployments.stop(slug)


def test_create_with_snake_case_keywords(rt: Shroud) -> None:
    slug = _slug("kw")
    assert rt.deployments.create(template_slug="bash", api_slug=slug, command=["sleep", "30"], replicas=1) == slug
    rt.deployments.delete(slug)


def test_deployment_of_a_vault_beyond_the_grant(rt: Shroud) -> None:
    with pytest.raises(shroud.PermissionDeniedError):
        rt.deployments.create({"templateSlug": "bash", "apiSlug": _slug("no"), "command": ["true"], "vault": "production"})


def test_bad_deployment_is_a_validation_error(rt: Shroud) -> None:
    with pytest.raises(shroud.ValidationError):
        rt.deployments.create({"templateSlug": "bash", "apiSlug": _slug("bad"), "command": ["true"], "mode": "neither"})


def test_agent_runs(rt: Shroud, secret: str) -> None:
    slug = _slug("bot")
    rt.deployments.create(
        {
            "templateSlug": "bash",
            "apiSlug": slug,
            "mode": "agent",
            "command": ["sh", "-c", f"cat; echo; echo ${secret}; exit 0"],
            "secrets": [secret],
        }
    )
    try:
        run = rt.agents.run(slug, message="hello agent", params={"limit": 3})
        assert isinstance(run, shroud.Run)
        assert run.status == "succeeded" and run.ok and run.done and run.exit_code == 0
        assert run.log is not None
        first_line = json.loads(run.log.splitlines()[0])
        assert first_line["message"] == "hello agent" and first_line["params"] == {"limit": 3}
        assert first_line["run_id"] == run.run_id
        assert f"<secret:{secret.lower()}>" in run.log and "deploy-secret-value" not in run.log

        started = rt.agents.run(slug, message="no wait", wait=False)
        assert started.run_id and started.status is None
        with rt.runs.log(started.run_id, follow=True) as lines:
            got = list(lines)
        assert got[-1]["event"] == "exit" and got[-1]["code"] == 0
        assert any("no wait" in (l.get("data") or "") for l in got)
        fetched = rt.runs.get(started.run_id)
        assert fetched.status == "succeeded" and fetched.slug == slug
        ids = [r.run_id for r in rt.agents.runs(slug)]
        assert ids == [run.run_id, started.run_id]
    finally:
        rt.deployments.delete(slug)


def test_failed_agent_run(rt: Shroud) -> None:
    slug = _slug("fail")
    rt.deployments.create({"templateSlug": "bash", "apiSlug": slug, "mode": "agent", "command": ["sh", "-c", "exit 4"]})
    try:
        run = rt.agents.run(slug, message="x")
        assert run.status == "failed" and run.exit_code == 4 and not run.ok
    finally:
        rt.deployments.delete(slug)


def test_unknown_run_is_404(rt: Shroud) -> None:
    with pytest.raises(shroud.NotFoundError):
        rt.runs.get("no-such-run")
    with pytest.raises(shroud.NotFoundError):
        rt.agents.run("no-such-agent", message="x")
