"""A settled local pipeline (S3 path: moto Kinesis and S3, chDB with S3Queue) to replay from."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from testkit.local import LocalPipelines


@pytest.fixture
def make_s3_pipeline(moto_s3: Any, tmp_path: Any) -> Iterator[Any]:
    pipelines = LocalPipelines(moto_s3, tmp_path, "replay")
    yield lambda **options: pipelines.build(**{"paths": ("s3",), "conflict_share": 0.0, **options})
    pipelines.close()
