from taskrun.api import make_resolver
from taskrun.callbacks import Callback, CallbackList, CompleteCallback
from taskrun.runtime import api_handler, callbacks

app = make_resolver()


@app.get("/v1/runs/<run_id>/callbacks")
def list_callbacks(run_id: str) -> CallbackList:
    return CallbackList(callbacks=callbacks().of_run(run_id))


@app.post("/v1/runs/<run_id>/callbacks/<callback_id>")
def complete_callback(run_id: str, callback_id: str, body: CompleteCallback) -> Callback:
    return callbacks().complete(run_id, callback_id, body)


lambda_handler = api_handler(app)
