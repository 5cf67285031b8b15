from http import HTTPStatus

from taskrun.access.keys import (
    KeyList,
    KeyView,
    NewKey,
    NewKeyRequest,
    keys_within,
    new_key,
    refuse_beyond,
    revoke_within,
    view_of,
)
from taskrun.api import answers, caller, json_response, make_resolver
from taskrun.event_handler import Response
from taskrun.runtime import api_handler, key_store, logger, usage_plan

app = make_resolver()


@app.post(
    "/v1/keys",
    summary="Make an API key (admin scope); the key is shown only in this answer",
    tags=["keys"],
    description=(
        "The key gets its own throttle (the stack's KeyThrottlingRateLimit and KeyThrottlingBurstLimit)."
        " A key gives no more than it has: the new key's scopes and tasks must lie within the calling"
        " key's own (403 names what exceeds)."
    ),
    responses=answers(201, NewKey, 400, 403, 415, 422, 503),
)
def create_key(body: NewKeyRequest) -> Response[str]:
    refuse_beyond(caller(app), list(body.scopes), list(body.tasks), "make")
    secret, record = new_key(name=body.name, scopes=list(body.scopes), tasks=list(body.tasks))
    plan = usage_plan()
    if plan is not None:
        record = plan.enrol(record)
    try:
        key_store().put(record)
    except Exception:
        if plan is not None:
            plan.withdraw(record)
        raise
    extra = {"key_id": record.key_id, "made_by": caller(app).key_id, "scopes": record.scopes, "tasks": record.tasks}
    logger.info("key made", extra=extra)
    return json_response(NewKey(**view_of(record).model_dump(), key=secret), HTTPStatus.CREATED)


@app.get(
    "/v1/keys",
    summary="The stack's API keys, without their secrets (admin scope)",
    description="Only the keys whose scopes and tasks lie within the calling key's own.",
    tags=["keys"],
    responses=answers(200, KeyList, 403),
)
def list_keys() -> KeyList:
    return KeyList(keys=[view_of(key) for key in keys_within(caller(app), key_store())])


@app.delete(
    "/v1/keys/<key_id>",
    summary="Revoke an API key (admin scope)",
    description=(
        "Refused at once by authorizer instances that have not seen the key lately, and by every"
        " instance within the stack's KeyCacheSeconds (60 s by default): each keeps a valid key that long."
        " A key made over this API is refused sooner: its usage-plan key is deleted with it, and API"
        " Gateway refuses the key (403) as soon as that deletion reaches it. Only a key within the"
        " calling key's own scopes and tasks may be revoked (403 names what exceeds)."
    ),
    tags=["keys"],
    responses=answers(200, KeyView, 403, 404),
)
def revoke_key(key_id: str) -> KeyView:
    revoked = revoke_within(caller(app), key_store(), key_id)
    if (plan := usage_plan()) is not None:
        plan.withdraw(revoked)  # API Gateway refuses it from now on, even where an authorizer still holds it
    logger.info("key revoked", extra={"key_id": key_id, "revoked_by": caller(app).key_id})
    return view_of(revoked)


lambda_handler = api_handler(app)
