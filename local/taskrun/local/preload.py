"""What the sandboxes' server process loads once for every sandbox forked from it, beyond
the libraries it imports (taskrun.local.sandbox's PRELOADED names this module last).

botocore reads each service's model, endpoint rules and the partitions (megabytes of JSON,
~15 MB of objects for DynamoDB and Lambda) into a loader of each session it makes: every
sandbox's first AWS client read them again into its own memory. Here one loader serves every
session made in this process tree, read once, in the server: a forked sandbox shares those
pages with the server and its siblings rather than holding a copy. A session given its own
data path (AWS_DATA_PATH) still gets its own loader. What a handler sees of botocore is
unchanged: the same models, read from the same files. Warming is an optimisation only: it
reads no AWS configuration of the person running the stack (a profile that does not exist
must not stop the sandboxes), and if it fails the loader is read on first use, as before.
"""

from __future__ import annotations

import gc
import os
from typing import Any

import boto3
import botocore.loaders
import botocore.session

# the services the sandboxes call on nearly every invocation (the runs table; invokes; results; flows)
SHARED_SERVICES = ("dynamodb", "lambda", "s3", "stepfunctions")


class _SearchPaths(list):  # type: ignore[type-arg]
    """A loader's search paths, each once: every boto3 session appends its own data folder
    to its loader's paths, and here every session has the one loader."""

    def append(self, path: Any) -> None:
        if path not in self:
            super().append(path)


def share_service_models() -> None:
    shared = botocore.loaders.create_loader()
    shared._search_paths = _SearchPaths(shared.search_paths)

    def create_loader(search_path_string: str | None = None) -> Any:
        return botocore.loaders.create_loader(search_path_string) if search_path_string else shared

    botocore.session.create_loader = create_loader  # type: ignore[attr-defined]
    kept = dict(os.environ)
    try:
        # no profile, config or data path of the person's: explicit credentials and region
        for name in [name for name in os.environ if name.startswith("AWS_")]:
            del os.environ[name]
        os.environ.update(AWS_CONFIG_FILE=os.devnull, AWS_SHARED_CREDENTIALS_FILE=os.devnull)
        warm = boto3.session.Session(
            aws_access_key_id="preload", aws_secret_access_key="preload", region_name="us-east-1"
        )
        for service in SHARED_SERVICES:
            warm.client(service)  # type: ignore[call-overload]
        warm.resource("dynamodb")
    except Exception:
        pass
    finally:
        os.environ.clear()
        os.environ.update(kept)


share_service_models()
# Everything loaded so far is kept out of garbage collection from here on, in this server and
# in each sandbox forked from it: a full collection writes to every object it visits, and so
# copies each page the sandboxes would otherwise share with the server (Python's gc.freeze).
gc.collect()
gc.freeze()
