from http import HTTPStatus

from taskrun.api import answers, json_response, make_resolver
from taskrun.errors import InvalidInput
from taskrun.event_handler import Response
from taskrun.models import utcnow
from taskrun.results.files import NewFile, Upload
from taskrun.runtime import api_handler, file_store

app = make_resolver()


@app.post(
    "/v1/files",
    summary="Make a file for a run's File parameter: a pre-signed PUT to upload it to",
    tags=["files"],
    responses=answers(201, Upload, 400, 403, 415, 422),
)
def new_file(body: NewFile) -> Response[str]:
    files = file_store()
    if files is None:
        raise InvalidInput("this stack takes no files")
    return json_response(files.new_upload(body, utcnow()), HTTPStatus.CREATED)


lambda_handler = api_handler(app)
