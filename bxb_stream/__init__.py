"""bxb-stream's tooling: everything around the Lambdas (which run ``bxb_runtime`` only).

  producer   - PutRecords batching into Kinesis (the library and ``bxb-stream produce``)
  firehose   - a local stand-in for Firehose (source, processor, Parquet, S3, HTTP)
  clickhouse - DDL, migrations, the embedded engine and usage queries
  local      - the local pipeline behind ``bxb-stream local``
  deployment - the CDK app's typed config; plan - ``bxb-stream plan``; cli - the commands

The event contract, the transform and the ingest live in ``bxb_runtime``; this package
imports it, never the other way round.
"""

__version__ = "0.1.0"
