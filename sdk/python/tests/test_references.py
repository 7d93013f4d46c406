"""Scoped secrets and their `$secret:` references; fetch resolving them."""

from __future__ import annotations

import pytest

import shroud
from shroud import Shroud


def test_references_set_get_delete(ws: Shroud, server, name: str) -> None:
    ref = ws.references.set(name, "ref-value-123456")
    assert isinstance(ref, str) and ref.startswith("$secret:")
    assert isinstance(ref, shroud.SecretRef) and ref.expires_at
    again = ws.references.get(name, ttl=60)
    assert again.startswith("$secret:") and again != ref
    # Stored in the `workspace` vault.
    assert server.cli("secret", "exists", name, "--vault", "workspace").stdout.strip() == "true"
    ws.references.delete(name)
    with pytest.raises(shroud.NotFoundError) as e:
        ws.references.get(name)
    assert e.value.error == "not_found"
    with pytest.raises(shroud.NotFoundError):
        ws.references.delete(name)


def test_user_scope(ws: Shroud, server, name: str) -> None:
    ref = ws.references.set(name, "user-scoped-value", scope="user")
    assert ref.startswith("$secret:")
    assert server.cli("secret", "exists", name, "--vault", "user.alice").stdout.strip() == "true"
    assert ws.references.get(name, scope="user").startswith("$secret:")
    ws.references.delete(name, scope="user")


def test_user_scope_needs_a_user(rt: Shroud, name: str) -> None:
    with pytest.raises(shroud.ValidationError) as e:
        rt.references.set(name, "no-user-here", scope="user")
    assert e.value.error == "user_required"


def test_workspace_scope_needs_its_grant(rt: Shroud, name: str) -> None:
    with pytest.raises(shroud.PermissionDeniedError):
        rt.references.set(name, "no-workspace-grant")


def test_fetch_resolves_and_masks_references(ws: Shroud, echo_url: str) -> None:
    value = "tok-abcdef1234567890"
    ref = ws.references.set("API_TOKEN", value)
    resp = ws.fetch(
        echo_url + "/echo",
        method="POST",
        headers={"X-Api-Key": ref},
        query={"key": ref},
        body={"token": ref},
        auth=shroud.bearer_auth(ref),
    )
    assert resp.status == 200 and resp.ok
    echoed = resp.json()
    assert echoed["method"] == "POST"
    assert value not in resp.text and value not in str(resp.headers)
    assert "<secret:api_token>" in echoed["headers"]["x-api-key"]
    assert echoed["headers"]["authorization"] == "Bearer <secret:api_token>"
    assert resp.headers["x-echo-auth"] == "Bearer <secret:api_token>"
    assert echoed["body"] == '{"token":"<secret:api_token>"}'
    assert echoed["headers"]["content-type"] == "application/json"
    assert "key=%3Csecret" in echoed["path"] or "<secret:api_token>" in echoed["path"]


def test_fetch_basic_auth_and_get(ws: Shroud, echo_url: str) -> None:
    ref = ws.references.set("BASIC_PW", "basic-password-value")
    resp = ws.fetch(echo_url + "/x", auth=("user", ref))
    assert resp.json()["method"] == "GET"
    assert "basic-password-value" not in resp.text
    assert resp.json()["headers"]["authorization"].startswith("Basic ")


def test_fetch_unknown_reference_is_400(ws: Shroud, echo_url: str) -> None:
    with pytest.raises(shroud.ValidationError):
        ws.fetch(echo_url, headers={"X": "$secret:" + "A" * 43})
