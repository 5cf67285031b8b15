from http import HTTPStatus

from taskrun.api import answers, caller, json_response, make_resolver
from taskrun.event_handler import Response
from taskrun.runtime import api_handler, deliveries
from taskrun.webhooks.records import Delivery, DeliveryList

app = make_resolver()


@app.get(
    "/v1/runs/<run_id>/deliveries",
    summary="A run's webhook deliveries and every attempt",
    tags=["runs"],
    responses=answers(200, DeliveryList, 403, 404),
)
def list_deliveries(run_id: str) -> DeliveryList:
    return DeliveryList(deliveries=deliveries().of_run(run_id, caller(app).tasks))


@app.post(
    "/v1/runs/<run_id>/deliveries/<delivery_id>/retry",
    summary="Attempt a webhook delivery again now",
    tags=["runs"],
    responses=answers(202, Delivery, 403, 404, 409, description="The delivery, queued for an attempt"),
)
def retry_delivery(run_id: str, delivery_id: str) -> Response[str]:
    return json_response(deliveries().retry(run_id, delivery_id, caller(app).tasks), HTTPStatus.ACCEPTED)


lambda_handler = api_handler(app)
