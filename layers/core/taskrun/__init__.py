"""taskrun: run named tasks over HTTP on AWS Lambda, Step Functions and DynamoDB."""

from taskrun.catalog import RunContext, flow, task
from taskrun.files import File

__all__ = ["File", "RunContext", "flow", "task"]
