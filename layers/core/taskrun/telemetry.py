"""The business metrics, one namespace (POWERTOOLS_METRICS_NAMESPACE), flushed by each handler."""

from __future__ import annotations

import warnings

from aws_lambda_powertools import Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.metrics.functions import is_metrics_disabled

metrics = Metrics()

# Routes that only read (health, catalog, get) flush nothing, and that is normal.
warnings.filterwarnings("ignore", message="No application metrics to publish")


def count(name: str, value: int = 1) -> None:
    """Count one event. A status goes in the name (`RunsEnded_failed`), not in a dimension:
    dimensions hold for a whole flush, and one process may serve many runs at once locally.

    With POWERTOOLS_METRICS_DISABLED nothing is added: Metrics would keep disabled metrics
    unflushed and print them anyway once a hundred pile up."""
    if not is_metrics_disabled():
        metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)
