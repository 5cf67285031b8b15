"""API keys over the API: made (shown once), listed without secrets, revoked; admin scope
only. The authorizer keeps a valid key for KEY_CACHE_SECONDS: a revoked key is refused
within that, and a key made over the API at once (its usage-plan key is deleted with it)."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest
from moto.dynamodb.models import DynamoDBBackend

from taskrun.access.keys import DynamoKeyStore, hash_key, new_key
from taskrun.settings import get_settings
from tests.conftest import KEY_CACHE_SECONDS


def refused_within(client: httpx.Client, headers: dict[str, str], seconds: float, status: int = 401) -> float:
    """Seconds until a request with these headers is refused (401 by the authorizer, or 403
    by API Gateway for want of its usage-plan key); fails past `seconds`."""
    began = time.monotonic()
    while (answer := client.get("/v1/tasks", headers=headers)).status_code != status:
        assert answer.status_code in (200, 401, 403), answer.text
        assert answer.headers["content-type"] == "application/problem+json" or answer.status_code == 200
        assert time.monotonic() - began < seconds, "still accepted"
        time.sleep(0.1)
    return time.monotonic() - began


def test_an_admin_key_makes_lists_and_revokes_keys(api: httpx.Client, anonymous: httpx.Client) -> None:
    # When an admin key makes a key for runs
    made = api.post("/v1/keys", json={"name": "ci"})
    assert made.status_code == 201, made.text
    key = made.json()
    # by default, every scope but admin, for every task
    assert key["scopes"] == ["runs:write", "runs:read", "schedules:write", "schedules:read"]
    assert key["tasks"] == [] and key["name"] == "ci" and key["revoked"] is False
    assert key["key"].startswith("trk_") and key["key_id"].startswith("key_")
    # Then the new key runs tasks
    runner = {"X-API-KEY": key["key"]}
    assert anonymous.get("/v1/tasks", headers=runner).status_code == 200
    # and is listed without its secret or hash
    listed = api.get("/v1/keys").json()["keys"]
    mine = [item for item in listed if item["key_id"] == key["key_id"]]
    shown = ("key_id", "name", "scopes", "tasks", "created_at", "revoked")
    assert mine == [{name: key[name] for name in shown}]
    assert all(set(item) == set(shown) for item in listed)
    # but cannot manage keys (403), as Bearer too
    refused = anonymous.get("/v1/keys", headers={"Authorization": f"Bearer {key['key']}"})
    assert refused.status_code == 403 and refused.headers["content-type"] == "application/problem+json"
    assert "scope" in refused.json()["detail"]
    assert anonymous.post("/v1/keys", headers=runner, json={}).status_code == 403
    assert anonymous.delete(f"/v1/keys/{key['key_id']}", headers=runner).status_code == 403
    # When it is revoked
    revoked = api.delete(f"/v1/keys/{key['key_id']}")
    assert revoked.status_code == 200 and revoked.json()["revoked"] is True
    # Then the next request with it is refused (API Gateway: its usage-plan key is gone),
    # and the authorizer refuses it too once its copy is too old
    assert anonymous.get("/v1/tasks", headers=runner).status_code in (401, 403)
    refused_within(anonymous, runner, KEY_CACHE_SECONDS + 3)
    assert api.delete("/v1/keys/key_0000000000000000").status_code == 404


def test_an_admin_key_may_make_another_admin_key(api: httpx.Client, anonymous: httpx.Client) -> None:
    made = api.post("/v1/keys", json={"name": "ops", "scopes": ["runs:read", "admin"]}).json()
    admin = {"X-API-KEY": made["key"]}
    assert anonymous.get("/v1/keys", headers=admin).status_code == 200
    assert api.delete(f"/v1/keys/{made['key_id']}").status_code == 200
    refused_within(anonymous, admin, KEY_CACHE_SECONDS + 3)


def test_a_key_written_into_the_table_is_refused_within_the_key_cache_delay_once_revoked(
    api: httpx.Client, anonymous: httpx.Client
) -> None:
    # Given a key written straight into the table (no usage-plan key of its own), in use
    secret, record = new_key(name="table")
    DynamoKeyStore(get_settings().keys_table).put(record)
    written = {"X-API-KEY": secret}
    assert anonymous.get("/v1/tasks", headers=written).status_code == 200
    # When it is revoked over the API (which has no usage-plan key to delete)
    assert api.delete(f"/v1/keys/{record.key_id}").status_code == 200
    assert api.delete(f"/v1/keys/{record.key_id}").status_code == 200  # again: still revoked, nothing fails
    # Then the authorizer refuses it within its keeping time
    refused_within(anonymous, written, KEY_CACHE_SECONDS + 3)


def test_revoking_a_key_twice_answers_it_revoked_both_times(api: httpx.Client) -> None:
    made = api.post("/v1/keys", json={"name": "twice"}).json()
    for _ in range(2):
        answer = api.delete(f"/v1/keys/{made['key_id']}")
        assert answer.status_code == 200 and answer.json()["revoked"] is True


def test_the_authorizer_reads_a_key_once_while_it_keeps_it(
    api: httpx.Client, anonymous: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = api.post("/v1/keys", json={"name": "busy"}).json()
    runner = {"X-API-KEY": key["key"]}
    wanted = hash_key(key["key"])
    reads = 0
    original = DynamoDBBackend.get_item

    def counted(backend: DynamoDBBackend, table_name: str, keys: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        nonlocal reads
        reads += "KeysTable" in table_name and keys.get("key_hash") == {"S": wanted}
        return original(backend, table_name, keys, *args, **kwargs)

    monkeypatch.setattr(DynamoDBBackend, "get_item", counted)
    # When the key makes ten requests one after another
    began = time.monotonic()
    for _ in range(10):
        assert anonymous.get("/v1/tasks", headers=runner).status_code == 200
    kept_periods = 1 + int((time.monotonic() - began) // KEY_CACHE_SECONDS)
    # Then its record was read once a keeping period (by each of at most two warm authorizer
    # instances), not ten times
    assert 1 <= reads <= min(9, 2 * kept_periods)
    # and past that time it is read again
    time.sleep(KEY_CACHE_SECONDS)
    assert anonymous.get("/v1/tasks", headers=runner).status_code == 200
    assert reads >= 2


def test_a_limited_admin_key_makes_lists_and_revokes_only_keys_within_its_own(
    api: httpx.Client, anonymous: httpx.Client
) -> None:
    # Given an admin key limited to reports/*, which may also run and read runs
    limited = api.post(
        "/v1/keys",
        json={"name": "reports-admin", "scopes": ["runs:write", "runs:read", "admin"], "tasks": ["reports/*"]},
    ).json()
    manager = {"X-API-KEY": limited["key"]}
    # and a key of the whole stack, made by the stack's own key
    wide = api.post("/v1/keys", json={"name": "wide"}).json()

    # When it asks for more than it has, it is refused with a problem naming what exceeds
    for body, named in [
        ({"name": "everything"}, ["schedules:write", "every task"]),  # the defaults: all but admin, every task
        ({"scopes": ["runs:read"]}, ["every task"]),
        ({"scopes": ["runs:read"], "tasks": ["billing/*"]}, ["billing/*"]),
        ({"scopes": ["runs:read"], "tasks": ["reports/daily", "*"]}, ["every task"]),
        ({"scopes": ["schedules:read"], "tasks": ["reports/daily"]}, ["schedules:read"]),
        ({"scopes": ["runs:read"], "tasks": ["reportsX/*"]}, ["reportsX/*"]),
    ]:
        refused = anonymous.post("/v1/keys", headers=manager, json=body)
        assert refused.status_code == 403, (body, refused.text)
        assert refused.headers["content-type"] == "application/problem+json"
        assert all(name in refused.json()["detail"] for name in named), (body, refused.json()["detail"])

    # But it makes keys within its own: equal, narrower in scopes, or in tasks
    made = []
    for body in [
        {"name": "same", "scopes": ["runs:write", "runs:read", "admin"], "tasks": ["reports/*"]},
        {"name": "eu-reports-reader", "scopes": ["runs:read"], "tasks": ["reports/eu/*"]},
        {"name": "daily", "scopes": ["runs:write"], "tasks": ["reports/daily"]},
    ]:
        answer = anonymous.post("/v1/keys", headers=manager, json=body)
        assert answer.status_code == 201, answer.text
        made.append(answer.json())
    # and the narrower key runs a report
    daily = {"X-API-KEY": made[2]["key"]}
    assert anonymous.post("/v1/runs", headers=daily, json={"task_id": "reports/daily"}).status_code == 201

    # It lists only the keys within its own (itself and those it made), not the stack's
    listed = {key["key_id"] for key in anonymous.get("/v1/keys", headers=manager).json()["keys"]}
    assert listed == {limited["key_id"], *(key["key_id"] for key in made)}
    assert wide["key_id"] in {key["key_id"] for key in api.get("/v1/keys").json()["keys"]}

    # It cannot revoke a wider key, which keeps working
    refused = anonymous.delete(f"/v1/keys/{wide['key_id']}", headers=manager)
    assert refused.status_code == 403 and "every task" in refused.json()["detail"]
    assert anonymous.get("/v1/tasks", headers={"X-API-KEY": wide["key"]}).status_code == 200
    # but revokes one within its own
    revoked = anonymous.delete(f"/v1/keys/{made[1]['key_id']}", headers=manager)
    assert revoked.status_code == 200 and revoked.json()["revoked"] is True


def test_an_admin_key_gives_no_scope_it_lacks(api: httpx.Client, anonymous: httpx.Client) -> None:
    # Given a key that manages keys and nothing else
    admin = {"X-API-KEY": api.post("/v1/keys", json={"name": "keys-only", "scopes": ["admin"]}).json()["key"]}
    # When it makes a key that could start runs, it is refused
    refused = anonymous.post("/v1/keys", headers=admin, json={"scopes": ["runs:write"]})
    assert refused.status_code == 403 and "runs:write" in refused.json()["detail"]
    # but it may make another key-manager
    assert anonymous.post("/v1/keys", headers=admin, json={"scopes": ["admin"]}).status_code == 201
