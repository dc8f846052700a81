from testkit.producer import _fake_aws, err, kinesis, make_stream, read, stub

__all__ = ["_fake_aws", "err", "kinesis", "make_stream", "read", "stub"]  # fixtures, shared with tests/unit/producer
