"""Monitoring: the training reference, request logging, drift and quality reports, triggers."""

from pipelines.monitoring.monitor import MonitorOptions, MonitorResult, monitor
from pipelines.monitoring.reference import Reference, load_reference, log_reference
from pipelines.monitoring.request_log import RequestLogger

__all__ = [
    "MonitorOptions",
    "MonitorResult",
    "Reference",
    "RequestLogger",
    "load_reference",
    "log_reference",
    "monitor",
]
