"""The base of taskrun's pydantic models: each builds its validator and serializer when it is
first used, not when its module is imported.

A cold start imports the models of every route and event a function declares; most of them
(a run's view in the health function, the schedules' in the runs') are never used by its
first request, or ever. Built at import, they were ~30 ms of an API function's init.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Model(BaseModel):
    model_config = ConfigDict(defer_build=True)
