"""Health checks and the gate that deploys wait on."""

from slipway.health.checks import CheckResult, build_checks
from slipway.health.gate import GateReport, wait_healthy

__all__ = ["CheckResult", "GateReport", "build_checks", "wait_healthy"]
