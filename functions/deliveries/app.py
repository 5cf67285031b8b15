from http import HTTPStatus

from aws_lambda_powertools.event_handler import Response

from taskrun.api import json_response, make_resolver
from taskrun.deliveries import DeliveryList
from taskrun.runtime import api_handler, deliveries

app = make_resolver()


@app.get("/v1/runs/<run_id>/deliveries")
def list_deliveries(run_id: str) -> DeliveryList:
    return DeliveryList(deliveries=deliveries().of_run(run_id))


@app.post("/v1/runs/<run_id>/deliveries/<delivery_id>/retry")
def retry_delivery(run_id: str, delivery_id: str) -> Response[str]:
    return json_response(deliveries().retry(run_id, delivery_id), HTTPStatus.ACCEPTED)


lambda_handler = api_handler(app)
