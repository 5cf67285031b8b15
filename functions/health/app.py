from taskrun.api import make_resolver
from taskrun.models import Health
from taskrun.runtime import api_handler

app = make_resolver()


@app.get("/v1/health")
def health() -> Health:
    return Health()


lambda_handler = api_handler(app)
