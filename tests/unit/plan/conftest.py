from testkit.plan import price_doc, prices, run_plan, write_prices

__all__ = ["price_doc", "prices", "run_plan", "write_prices"]  # fixtures, shared with tests/e2e/plan
