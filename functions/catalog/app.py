from taskrun.api import make_resolver
from taskrun.models import TaskInfo, TaskList
from taskrun.runtime import api_handler, task_catalog

app = make_resolver()


@app.get("/v1/tasks")
def list_tasks() -> TaskList:
    return TaskList(tasks=[definition.info() for definition in task_catalog().all()])


@app.get("/v1/tasks/.+")
def get_task() -> TaskInfo:
    # {task_id+} is greedy (ids hold "/"), so API Gateway hands it over whole.
    return task_catalog().get(app.current_event.path_parameters["task_id"]).info()


lambda_handler = api_handler(app)
