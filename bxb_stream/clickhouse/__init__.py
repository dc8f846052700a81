"""ClickHouse: the schema (``ddl``, ``migrations``), its inputs (``settings``), table names
(``tables``), the embedded engine for local runs and tests (``engine``), and usage queries
(``usage``).

Import ``engine`` and call ``engine.start()`` before anything imports ``chdb``.
"""
