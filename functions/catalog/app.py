from taskrun.api import answers, caller, make_resolver
from taskrun.catalog.info import TaskInfo, TaskList
from taskrun.runtime import api_handler, task_catalog

app = make_resolver()


@app.get(
    "/v1/tasks",
    summary="The catalog: every task with its parameter and output JSON Schemas",
    tags=["tasks"],
    responses=answers(200, TaskList, 403),
)
def list_tasks() -> TaskList:
    return TaskList(tasks=[definition.info() for definition in task_catalog().all(caller(app).tasks)])


@app.get(
    "/v1/tasks/.+",
    summary="One task, its revisions and schemas",
    tags=["tasks"],
    responses=answers(200, TaskInfo, 403, 404),
)
def get_task() -> TaskInfo:
    # {task_id+} is greedy (ids hold "/"), so API Gateway hands it over whole.
    return task_catalog().visible(app.current_event.path_parameters["task_id"], caller(app).tasks).info()


lambda_handler = api_handler(app)
