from taskrun.api import answers, caller, make_resolver, once_key
from taskrun.requests import BatchAnswer, BatchRequest
from taskrun.runs.batch import start_batch
from taskrun.runtime import api_handler, idempotency_keys, run_service, view

app = make_resolver()


@app.post(
    "/v1/runs/batch",
    summary="Start up to 100 runs in one request, each answered on its own",
    description=(
        "Each item of `runs` is a start request as POST /v1/runs takes it, without waiting. The answer holds,"
        " in the same order, each one's status and run (201), or its problem (with `errors[].location` such as"
        " `body.runs.3.arguments.name`); one refused request does not stop the others. With an `Idempotency-Key`"
        " header the whole batch is sent once: the same key and batch answer the same runs (200 each); the same"
        " key with another batch answers 409 and starts nothing."
    ),
    tags=["runs"],
    responses=answers(200, BatchAnswer, 400, 403, 409, 413, 415, 422, description="Each request's outcome, in order"),
)
def start_runs(body: BatchRequest) -> BatchAnswer:
    once = once_key(app, body)
    keys = idempotency_keys() if once is not None else None
    items = start_batch(run_service(), body.runs, caller(app).tasks, view, once, keys)
    return BatchAnswer(runs=items)


lambda_handler = api_handler(app)
