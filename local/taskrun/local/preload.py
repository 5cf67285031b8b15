"""What the sandboxes' server process loads once for every sandbox forked from it, beyond
the libraries it imports (taskrun.local.sandbox's PRELOADED names this module last).

botocore reads each service's model, endpoint rules and the partitions (megabytes of JSON,
~15 MB of objects for DynamoDB and Lambda) into a loader of each session it makes: every
sandbox's first AWS client read them again into its own memory. Here one loader serves every
session made in this process tree, read once, in the server: a forked sandbox shares those
pages with the server and its siblings rather than holding a copy.
A session given its own data path (AWS_DATA_PATH) still gets its own loader. What a handler
sees of botocore is unchanged: the same models, read from the same files.
"""

from __future__ import annotations

import gc
from typing import Any

import boto3
import botocore.loaders
import botocore.session

# the services the sandboxes call on nearly every invocation (the runs table; invokes; results; flows)
SHARED_SERVICES = ("dynamodb", "lambda", "s3", "stepfunctions")


def share_service_models() -> None:
    shared = botocore.loaders.create_loader()

    def create_loader(search_path_string: str | None = None) -> Any:
        return botocore.loaders.create_loader(search_path_string) if search_path_string else shared

    botocore.session.create_loader = create_loader  # type: ignore[attr-defined]
    # explicit credentials and region: making a client here must not look for either
    warm = boto3.session.Session(aws_access_key_id="preload", aws_secret_access_key="preload", region_name="us-east-1")
    for service in SHARED_SERVICES:
        warm.client(service)  # type: ignore[call-overload]
    warm.resource("dynamodb")


share_service_models()
# Everything loaded so far is kept out of garbage collection from here on, in this server and
# in each sandbox forked from it: a full collection writes to every object it visits, and so
# copies each page the sandboxes would otherwise share with the server (Python's gc.freeze).
gc.collect()
gc.freeze()
