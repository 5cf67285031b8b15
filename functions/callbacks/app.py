from taskrun.api import answers, caller, make_resolver
from taskrun.flows.callbacks import Callback, CallbackList, CompleteCallback
from taskrun.runtime import api_handler, callbacks

app = make_resolver()


@app.get(
    "/v1/runs/<run_id>/callbacks",
    summary="The callbacks a flow run waits on",
    tags=["runs"],
    responses=answers(200, CallbackList, 403, 404),
)
def list_callbacks(run_id: str) -> CallbackList:
    return CallbackList(callbacks=callbacks().of_run(run_id, caller(app).tasks))


@app.post(
    "/v1/runs/<run_id>/callbacks/<callback_id>",
    summary="Complete a callback: the waiting flow step goes on with its answer",
    tags=["runs"],
    responses=answers(200, Callback, 400, 403, 404, 409, 415, 422),
)
def complete_callback(run_id: str, callback_id: str, body: CompleteCallback) -> Callback:
    return callbacks().complete(run_id, callback_id, body, caller(app).tasks)


lambda_handler = api_handler(app)
