"""Fixtures shared by two layers of one topic (tests/unit/<topic> and tests/functional or e2e/<topic>).

Each layer's ``conftest.py`` imports the fixtures it uses from here (``pythonpath = ["tests"]`` in
pyproject.toml makes this package importable); conftest modules themselves are not importable in
pytest's importlib mode.
"""
