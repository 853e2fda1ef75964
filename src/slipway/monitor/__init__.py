"""Monitoring: sample an environment's figures, alert on the design's thresholds (once
when an alert fires, once when it resolves), and expose the figures to Prometheus."""

from slipway.monitor.alerts import Reading, Transition, evaluate, transitions
from slipway.monitor.sample import Sample

__all__ = ["Reading", "Sample", "Transition", "evaluate", "transitions"]
