"""Flows: Step Functions executions started, stopped and read as history steps, and a run ended
from an execution's status change (`stepfunctions`); callback steps, recorded by the worker
and completed once by a client (`callbacks`).
"""
