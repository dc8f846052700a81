"""Capacity and cost planner behind ``bxb-stream plan``: pure functions from a workload to shards, cost, latency."""

from bxb_stream.plan.cdk import CDK_CONTEXT_KEYS, cdk_context
from bxb_stream.plan.compute import Plan, plan
from bxb_stream.plan.errors import PlanError
from bxb_stream.plan.model import Pipeline, Workload
from bxb_stream.plan.prices import PriceSheet, load_prices
from bxb_stream.plan.render import make_report

__all__ = [
    "CDK_CONTEXT_KEYS",
    "Pipeline",
    "Plan",
    "PlanError",
    "PriceSheet",
    "Workload",
    "cdk_context",
    "load_prices",
    "make_report",
    "plan",
]
