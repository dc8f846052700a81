"""A settled local pipeline (S3 path: moto Kinesis and S3, chDB with S3Queue) to replay from."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import pytest

from bxb_stream.deployment import PipelineConfig
from bxb_stream.local.pipeline import LocalOptions, LocalPipeline

_names = itertools.count()


@pytest.fixture
def make_s3_pipeline(moto_s3: Any, tmp_path: Any) -> Iterator[Any]:
    made: list[LocalPipeline] = []

    def build(**options: Any) -> LocalPipeline:
        n = next(_names)
        defaults: dict[str, Any] = {
            "data_dir": tmp_path / f"run{n}", "endpoint_url": moto_s3.endpoint_url, "database": f"replay_t{n}",
            "buffer_seconds": 0.5, "timeout_s": 120, "shards": 2, "paths": ("s3",), "conflict_share": 0.0,
        }  # fmt: skip
        pipeline = LocalPipeline(PipelineConfig(name=f"replay-t{n}"), LocalOptions(**{**defaults, **options}))
        made.append(pipeline)
        pipeline.start()
        return pipeline

    yield build
    for pipeline in made:
        pipeline.stop()
        for runtime in pipeline.paths.values():
            pipeline.client.command(f"DROP DATABASE IF EXISTS {runtime.database} SYNC")
