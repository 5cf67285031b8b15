"""taskrun: run named tasks over HTTP on AWS Lambda, Step Functions and DynamoDB."""

from taskrun.catalog import RunContext, flow, task

__all__ = ["RunContext", "flow", "task"]
