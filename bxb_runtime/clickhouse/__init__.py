"""What the ingest Lambda needs of ClickHouse: table names (``tables``) and the insert client (``client``)."""
