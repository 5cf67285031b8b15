from http import HTTPStatus

from aws_lambda_powertools.event_handler import Response

from taskrun.api import answers, json_response, make_resolver, require_scope
from taskrun.auth import KeyList, KeyView, NewKey, NewKeyRequest, new_key, view_of
from taskrun.runtime import api_handler, key_store, logger

app = make_resolver()
ADMIN = "admin"


@app.post(
    "/v1/keys",
    summary="Make an API key (admin scope); the key is shown only in this answer",
    tags=["keys"],
    responses=answers(201, NewKey, 400, 403, 415, 422),
)
def create_key(body: NewKeyRequest) -> Response[str]:
    made_by = require_scope(app, ADMIN)
    secret, record = new_key(name=body.name, scopes=list(body.scopes))
    key_store().put(record)
    logger.info("key made", extra={"key_id": record.key_id, "made_by": made_by, "scopes": record.scopes})
    return json_response(NewKey(**view_of(record).model_dump(), key=secret), HTTPStatus.CREATED)


@app.get(
    "/v1/keys",
    summary="The stack's API keys, without their secrets (admin scope)",
    tags=["keys"],
    responses=answers(200, KeyList, 403),
)
def list_keys() -> KeyList:
    require_scope(app, ADMIN)
    return KeyList(keys=[view_of(key) for key in key_store().all()])


@app.delete(
    "/v1/keys/<key_id>",
    summary="Revoke an API key (admin scope): refused from the next request on",
    tags=["keys"],
    responses=answers(200, KeyView, 403, 404),
)
def revoke_key(key_id: str) -> KeyView:
    revoked_by = require_scope(app, ADMIN)
    revoked = key_store().revoke(key_id)
    logger.info("key revoked", extra={"key_id": key_id, "revoked_by": revoked_by})
    return view_of(revoked)


lambda_handler = api_handler(app)
