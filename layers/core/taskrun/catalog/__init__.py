"""The task catalog: `@task` and `flow(...)`, schemas from signatures, validation, revisions
and traffic weights, `RunContext` (`definitions`); the modules of the tasks directories
imported (`loader`); secret parameters masked (`masking`); the tasks' own secrets, in a
folder or SSM (`secrets`).
"""
