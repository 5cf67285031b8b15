"""The task catalog: `@task` and `flow(...)` registering tasks by id (`registry`), each task's
revisions, schemas from signatures, validation and traffic weights (`definitions`), what a
running task holds (`context`: `RunContext`, `Limit`), a task as the catalog shows it
(`info`); the modules of the tasks directories imported (`loader`); secret parameters
masked (`masking`); the tasks' own secrets, in a folder or SSM (`secrets`).
"""
