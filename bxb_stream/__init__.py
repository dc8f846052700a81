"""bxb-stream: ingestion pipeline for bxb's usage-based billing events.

Stages, in the order an event meets them:
  events     - the event contract (schema, validation)
  producer   - PutRecords batching into Kinesis
  transform  - the Firehose data-transformation logic (lambdas/transform)
  firehose   - a local stand-in for Firehose (source, processor, Parquet, S3, HTTP)
  ingest     - the HTTP-endpoint logic (lambdas/ingest) that inserts into ClickHouse
  clickhouse - DDL, migrations, the embedded engine and usage queries
"""

__version__ = "0.1.0"
