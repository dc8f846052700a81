"""Replay history after a fix: the Parquet archive into ClickHouse (``archive``), or a Kinesis
stream from a timestamp through the in-repo Firehose runner to S3 (``kinesis``).

Both are safe to repeat: billing is decided once per (organization_id, transaction_id), so
what was stored before comes back as duplicates, never as a second charge."""
