from taskrun.api import answers, make_resolver
from taskrun.requests import Health
from taskrun.runtime import api_handler

app = make_resolver()


@app.get("/v1/health", summary="Liveness: answers when the API is up", tags=["service"], responses=answers(200, Health))
def health() -> Health:
    return Health()


lambda_handler = api_handler(app)
