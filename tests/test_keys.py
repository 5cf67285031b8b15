"""API keys over the API: made (shown once), listed without secrets, revoked; admin scope only."""

from __future__ import annotations

import httpx


def test_an_admin_key_makes_lists_and_revokes_keys(api: httpx.Client, anonymous: httpx.Client) -> None:
    # When an admin key makes a key for runs
    made = api.post("/v1/keys", json={"name": "ci"})
    assert made.status_code == 201, made.text
    key = made.json()
    assert key["scopes"] == ["runs"] and key["name"] == "ci" and key["revoked"] is False
    assert key["key"].startswith("trk_") and key["key_id"].startswith("key_")
    # Then the new key runs tasks
    runner = {"X-API-KEY": key["key"]}
    assert anonymous.get("/v1/tasks", headers=runner).status_code == 200
    # and is listed without its secret or hash
    listed = api.get("/v1/keys").json()["keys"]
    mine = [item for item in listed if item["key_id"] == key["key_id"]]
    assert mine == [{name: key[name] for name in ("key_id", "name", "scopes", "created_at", "revoked")}]
    assert all(set(item) == {"key_id", "name", "scopes", "created_at", "revoked"} for item in listed)
    # but cannot manage keys (403), as Bearer too
    refused = anonymous.get("/v1/keys", headers={"Authorization": f"Bearer {key['key']}"})
    assert refused.status_code == 403 and refused.headers["content-type"] == "application/problem+json"
    assert "admin" in refused.json()["detail"]
    assert anonymous.post("/v1/keys", headers=runner, json={}).status_code == 403
    assert anonymous.delete(f"/v1/keys/{key['key_id']}", headers=runner).status_code == 403
    # When it is revoked
    revoked = api.delete(f"/v1/keys/{key['key_id']}")
    assert revoked.status_code == 200 and revoked.json()["revoked"] is True
    # Then the next request with it is refused
    assert anonymous.get("/v1/tasks", headers=runner).status_code == 401
    assert api.delete("/v1/keys/key_0000000000000000").status_code == 404


def test_an_admin_key_may_make_another_admin_key(api: httpx.Client, anonymous: httpx.Client) -> None:
    made = api.post("/v1/keys", json={"name": "ops", "scopes": ["runs", "admin"]}).json()
    admin = {"X-API-KEY": made["key"]}
    assert anonymous.get("/v1/keys", headers=admin).status_code == 200
    assert api.delete(f"/v1/keys/{made['key_id']}").status_code == 200
    assert anonymous.get("/v1/keys", headers=admin).status_code == 401
