from taskrun.api import make_resolver
from taskrun.models import TaskInfo, TaskList
from taskrun.runtime import api_handler, task_catalog

app = make_resolver()


@app.get("/v1/tasks")
def list_tasks() -> TaskList:
    return TaskList(tasks=[definition.info() for definition in task_catalog().all()])


@app.get("/v1/tasks/<task_id>")
def get_task(task_id: str) -> TaskInfo:
    return task_catalog().get(task_id).info()


lambda_handler = api_handler(app)
