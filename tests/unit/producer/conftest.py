from testkit.producer import _fake_aws, err, stub

__all__ = ["_fake_aws", "err", "stub"]  # fixtures, shared with tests/functional/producer
