"""Secrets, vars and rendering against a real server; errors and their texts."""

from __future__ import annotations

import pytest

import shroud
from shroud import Shroud


def test_set_get_list_exists_delete(rt: Shroud, name: str) -> None:
    assert rt.secrets.set(name, "s3cret-value-1", description="a test secret") == 1
    assert rt.secrets.set(name, "s3cret-value-2") == 2
    meta = rt.secrets.get(name)
    assert meta.name == name and meta.version == 2
    assert meta.updated_at and meta.created_at
    assert "s3cret" not in repr(meta)
    assert name in [s.name for s in rt.secrets.list()]
    listed = next(s for s in rt.secrets.list() if s.name == name)
    assert listed.version == 2
    assert "value" not in listed.raw and "secret" not in listed.raw
    assert rt.secrets.exists(name) is True
    rt.secrets.delete(name)
    assert rt.secrets.exists(name) is False
    with pytest.raises(shroud.NotFoundError) as e:
        rt.secrets.get(name)
    assert e.value.status == 404
    with pytest.raises(shroud.NotFoundError):
        rt.secrets.delete(name)


def test_explicit_vault_argument(server, ws_token: str, name: str) -> None:
    client = Shroud(base_url=server.url, token=ws_token)  # default vault: `default`, not granted
    assert client.secrets.set(name, "in-the-ci-vault", vault="ci") == 1
    assert client.secrets.exists(name, vault="ci")
    assert client.secrets.get(name, vault="ci").version == 1
    client.secrets.delete(name, vault="ci")


def test_set_many_mapping_and_items(rt: Shroud, name: str) -> None:
    result = rt.secrets.set_many({name + "_A": "alpha-value", name + "_B": "beta-value"})
    assert sorted(result.set_secrets) == [name + "_A", name + "_B"]
    assert result.versions == {name + "_A": 1, name + "_B": 1}
    result = rt.secrets.set_many([{"name": name + "_A", "secret": "alpha-2", "description": "d"}, (name + "_C", "gamma")])
    assert result.versions == {name + "_A": 2, name + "_C": 1}


def test_bulk_partial_failure(rt: Shroud, name: str) -> None:
    with pytest.raises(shroud.PartialSetError) as caught:
        rt.secrets.set_many({name + "_OK1": "first-value", name + "_EMPTY": "", name + "_OK2": "second-value"})
    e = caught.value
    assert isinstance(e, shroud.ValidationError) and isinstance(e, shroud.ShroudError)
    assert e.status == 400
    assert [x["name"] for x in e.errors] == [name + "_EMPTY"]
    assert e.errors[0]["error"]
    assert sorted(e.set_secrets) == [name + "_OK1", name + "_OK2"]
    assert e.versions == {name + "_OK1": 1, name + "_OK2": 1}
    # The others were set.
    assert rt.secrets.exists(name + "_OK1") and rt.secrets.exists(name + "_OK2")
    assert not rt.secrets.exists(name + "_EMPTY")
    for text in (str(e), repr(e)):
        assert "first-value" not in text and "second-value" not in text


def test_single_set_failure_is_typed(rt: Shroud, name: str) -> None:
    with pytest.raises(shroud.ValidationError) as e:
        rt.secrets.set(name, "")
    assert e.value.status == 400
    assert e.value.errors and e.value.errors[0]["name"] == name


def test_invalid_value_type_is_refused_client_side_without_the_value(rt: Shroud, name: str) -> None:
    with pytest.raises(TypeError) as e:
        rt.secrets.set(name, 12345678)  # type: ignore[arg-type]
    assert "12345678" not in str(e.value)


def test_vault_beyond_the_grant_is_403(rt: Shroud, name: str) -> None:
    with pytest.raises(shroud.PermissionDeniedError) as e:
        rt.secrets.set(name, "not-allowed-here", vault="production")
    assert e.value.status == 403
    assert "production" in e.value.error
    with pytest.raises(shroud.PermissionDeniedError):
        rt.secrets.list(vault="production")
    with pytest.raises(shroud.PermissionDeniedError):
        rt.secrets.exists(name, vault="production")  # HEAD: no body, still typed


def test_read_only_token_cannot_write(server, name: str) -> None:
    token = server.create_token("reader", grants=["ci:read"])
    client = Shroud(base_url=server.url, token=token, vault="ci")
    client.secrets.list()
    with pytest.raises(shroud.PermissionDeniedError):
        client.secrets.set(name, "read-only-token")


def test_bad_token_is_401(server) -> None:
    client = Shroud(base_url=server.url, token="shr_not-a-real-token", vault="ci")
    with pytest.raises(shroud.AuthenticationError) as e:
        client.secrets.list()
    assert e.value.status == 401
    assert "shr_not-a-real-token" not in str(e.value) + repr(e.value) + repr(client)


def test_no_token_is_403(server) -> None:
    client = Shroud(base_url=server.url, token="", vault="ci")
    with pytest.raises(shroud.PermissionDeniedError) as e:
        client.secrets.list()
    assert e.value.status == 403


def test_vars_set(rt: Shroud, server, name: str) -> None:
    rt.vars.set(name, "plain-value")
    assert server.cli("var", "get", name, "--vault", "ci").stdout.strip() == "plain-value"


def test_rendered_full_and_filter(rt: Shroud, name: str) -> None:
    rt.secrets.set_many({name + "_X": "rendered-value-x-long", name + "_Y": "ry"})
    full = rt.secrets.rendered(mode="Full", names=[name + "_X", name + "_Y"])
    assert full.mode == "Full" and full.vault == "ci"
    assert full.values() == {name + "_X": "rendered-value-x-long", name + "_Y": "ry"}
    assert full[name + "_X"].bytes() == b"rendered-value-x-long"
    assert "rendered-value" not in repr(full)
    preview = rt.secrets.rendered(mode="PreviewOnly", names=[name + "_X"])
    assert [s.name for s in preview] == [name + "_X"]
    item = preview[name + "_X"]
    assert item.value is None and item.preview and "rendered-value" not in item.preview


def test_errors_carry_status_error_errors(rt: Shroud) -> None:
    with pytest.raises(shroud.ValidationError) as e:
        rt.secrets.get("not a valid name!")
    assert e.value.status == 400 and isinstance(e.value.error, str) and e.value.errors == []


def test_unknown_route_is_404(rt: Shroud) -> None:
    with pytest.raises(shroud.NotFoundError):
        rt.request("GET", "/api/no-such-route")


def test_unreachable_server_is_a_connection_error() -> None:
    from shroud.testing import free_port

    client = Shroud(base_url=f"http://127.0.0.1:{free_port()}", token="t")
    with pytest.raises(shroud.ShroudConnectionError) as e:
        client.secrets.list()
    assert e.value.status is None
