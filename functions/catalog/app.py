from taskrun.api import answers, caller, make_resolver
from taskrun.catalog.info import ModuleProblemInfo, TaskInfo, TaskList
from taskrun.runtime import api_handler, task_catalog

app = make_resolver()


@app.get(
    "/v1/tasks",
    summary="The catalog: every task with its parameter and output JSON Schemas",
    tags=["tasks"],
    responses=answers(200, TaskList, 403),
)
def list_tasks() -> TaskList:
    catalog, access = task_catalog(), caller(app).tasks
    return TaskList(
        tasks=[catalog.info(definition) for definition in catalog.all(access)],
        unloaded_modules=[ModuleProblemInfo(**vars(problem)) for problem in catalog.unloaded()]
        if access.everything
        else [],
    )


@app.get(
    "/v1/tasks/.+",
    summary="One task, its revisions and schemas",
    tags=["tasks"],
    responses=answers(200, TaskInfo, 403, 404),
)
def get_task() -> TaskInfo:
    # {task_id+} is greedy (ids hold "/"), so API Gateway hands it over whole.
    catalog = task_catalog()
    return catalog.info(catalog.visible(app.current_event.path_parameters["task_id"], caller(app).tasks))


lambda_handler = api_handler(app)
