"""bxb-stream's runtime: the only project code the Lambda functions ship.

  events      - the event contract (schema, validation, the transform's output line)
  config      - EventRules; settings - the one config mechanism
  layout      - where things live in the bucket
  wire        - the AWS contracts (Firehose processor, Firehose HTTP endpoint)
  transform   - the Firehose data-transformation logic (lambdas/transform)
  ingest      - the HTTP-endpoint logic (lambdas/ingest)
  clickhouse  - table names and the insert client

It never imports ``bxb_stream`` (the tooling: producer, local Firehose, local pipeline,
planner, CLI); tests/unit/test_layering.py checks it.
"""
