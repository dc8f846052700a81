"""The one error the planner raises for bad input; the CLI maps it to exit code 2."""

from __future__ import annotations


class PlanError(ValueError):
    """An input or price sheet is unusable. The message names the problem."""
