"""The contract's changes that are landing in the server (notes/sdk-contract.md).

These fail against a binary built before them: health, string commands, cwd,
purposes, 422 field paths, the bulk error text, rendered's PreviewOnly
default, non-string reference values, AWS SigV4 fetch auth and the exit
event's buffered field names.
"""

from __future__ import annotations

import json

import pytest

import shroud
from shroud import Shroud


def test_health_needs_no_token(server) -> None:
    health = Shroud(base_url=server.url, token="").health()
    assert isinstance(health, shroud.Health)
    assert health.status == "ok" and health.ok
    assert health.version == "0.1.0"
    assert health.store_reachable is True


def test_exec_string_command_runs_in_sh(rt: Shroud, sandbox: shroud.Sandbox, name: str) -> None:
    rt.secrets.set(name, "string-command-secret")
    result = sandbox.exec(f"echo ${name}; exit 3", secrets=[name])
    assert result.exit_code == 3
    assert result.stdout == f"<secret:{name.lower()}>\n"


def test_commands_run_string(sandbox: shroud.Sandbox) -> None:
    chunks = []
    result = sandbox.commands.run('echo "hello $NAME"', envs={"NAME": "world"}, on_stdout=chunks.append)
    assert result.stdout == "hello world\n" and "".join(chunks) == "hello world\n"
    with pytest.raises(shroud.CommandExitError) as e:
        sandbox.commands.run("exit 9")
    assert e.value.exit_code == 9


def test_exec_cwd(sandbox: shroud.Sandbox) -> None:
    assert sandbox.exec(["mkdir", "-p", "sub/dir"]).ok
    top = sandbox.exec(["pwd"]).stdout.strip()
    assert sandbox.exec(["pwd"], cwd="sub/dir").stdout.strip() == top + "/sub/dir"
    with pytest.raises(shroud.ValidationError):
        sandbox.exec(["pwd"], cwd="../..")
    with pytest.raises(shroud.ValidationError):
        sandbox.exec(["pwd"], cwd="/etc")


def test_commands_run_cwd(sandbox: shroud.Sandbox) -> None:
    sandbox.exec(["mkdir", "-p", "work"])
    assert sandbox.commands.run(["pwd"], cwd="work").stdout.strip().endswith("/work")


def test_purposes(rt: Shroud, name: str) -> None:
    rt.secrets.set(name, "purposeful-value", purpose="APIKey")
    assert rt.secrets.get(name).purpose == "APIKey"
    rt.secrets.set(name + "_D", "default-purpose")
    assert rt.secrets.get(name + "_D").purpose == "Other"
    rt.secrets.set_many([{"name": name + "_S", "secret": "ssh-key-value", "purpose": "SSHKey"}])
    listed = {s.name: s.purpose for s in rt.secrets.list()}
    assert listed[name] == "APIKey" and listed[name + "_D"] == "Other" and listed[name + "_S"] == "SSHKey"


def test_wrong_field_type_is_422_naming_the_path(rt: Shroud, name: str) -> None:
    with pytest.raises(shroud.ValidationError) as e:
        rt.request(
            "POST",
            "/api/vaults/secrets",
            {"vault_name": "ci", "secrets": [{"name": name, "secret": "ok-value"}, {"name": name + "_2", "secret": 5}]},
        )
    assert e.value.status == 422
    assert "secrets[1].secret" in e.value.error
    with pytest.raises(shroud.ValidationError) as e2:
        rt.request("POST", "/api/sandboxes", {"template": 5})
    assert e2.value.status == 422 and "template" in e2.value.error


def test_bulk_error_text(rt: Shroud, name: str) -> None:
    with pytest.raises(shroud.PartialSetError) as e:
        rt.secrets.set_many({name: "fine-value", name + "_E": ""})
    assert e.value.error.startswith(f"The following secrets could not be set:\n  {name}_E: ")
    assert e.value.set_secrets == [name]


def test_rendered_defaults_to_preview_only(rt: Shroud, name: str) -> None:
    rt.secrets.set(name, "a-long-rendered-value")
    rendered = rt.secrets.rendered(names=[name])
    assert rendered.mode == "PreviewOnly"
    item = rendered[name]
    assert item.value is None and item.preview and "a-long-rendered-value" not in item.preview


def test_rendered_environment_alias(rt: Shroud, name: str) -> None:
    rt.secrets.set(name, "environment-value")
    rendered = rt.secrets.rendered(environment="ci", mode="Full", names=[name])
    assert rendered.vault == "ci" and rendered.values() == {name: "environment-value"}


def test_reference_value_may_be_any_json(ws: Shroud, server, name: str) -> None:
    ref = ws.references.set(name, {"user": "bob", "ids": [1, 2], "ok": True})
    assert ref.startswith("$secret:")
    revealed = server.cli("secret", "reveal", name, "--vault", "workspace").stdout.strip()
    assert " " not in revealed  # compact JSON text
    assert json.loads(revealed) == {"user": "bob", "ids": [1, 2], "ok": True}


def test_fetch_aws_sigv4(ws: Shroud, echo_url: str) -> None:
    ref = ws.references.set("AWS_SECRET", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")
    resp = ws.fetch(
        echo_url + "/bucket/key",
        auth=shroud.aws_v4_auth("AKIDEXAMPLE", ref, "us-east-1", "s3", session_token="session-token-value"),
    )
    headers = resp.json()["headers"]
    assert headers["authorization"].startswith("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/")
    assert "x-amz-date" in headers and "x-amz-content-sha256" in headers
    assert "x-amz-security-token" in headers
    assert "wJalrXUtnFEMI" not in resp.text


def test_stream_exit_event_has_the_buffered_field_names(sandbox: shroud.Sandbox) -> None:
    with sandbox.stream(["sh", "-c", "exit 6"]) as events:
        last = list(events)[-1]
    assert isinstance(last, shroud.ExitEvent)
    for field in ("exit_code", "code", "signal", "duration_ms", "timed_out", "output_limit_reached", "cancelled"):
        assert field in last.raw, field
    assert last.raw["exit_code"] == 6 == last.exit_code
