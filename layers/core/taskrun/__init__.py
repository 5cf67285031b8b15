"""taskrun: run named tasks over HTTP on AWS Lambda, Step Functions and DynamoDB."""

__version__ = "0.2.0"

from taskrun.catalog import RunContext, flow, task
from taskrun.files import File

__all__ = ["File", "RunContext", "__version__", "flow", "task"]
