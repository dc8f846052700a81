from testkit.plan import run_plan

__all__ = ["run_plan"]  # a fixture, shared with tests/unit/plan
