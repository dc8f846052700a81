"""Local pipelines for tests: the session's moto and chDB, short buffers, a database each.

``LocalPipelines`` builds and starts them, and ``close`` stops each one and drops its
databases, so tests sharing the session engine never see each other's rows."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

from bxb_stream.deployment import PipelineConfig
from bxb_stream.local.pipeline import LocalOptions, LocalPipeline

_names = itertools.count()


class LocalPipelines:
    def __init__(self, moto_s3: Any, tmp_path: Path, prefix: str) -> None:
        self.endpoint_url = moto_s3.endpoint_url
        self.tmp_path = tmp_path
        self.prefix = prefix
        self.made: list[LocalPipeline] = []

    def build(self, **options: Any) -> LocalPipeline:
        n = next(_names)
        defaults: dict[str, Any] = {
            "data_dir": self.tmp_path / f"run{n}", "endpoint_url": self.endpoint_url,
            "database": f"{self.prefix}_t{n}", "buffer_seconds": 0.5, "timeout_s": 120, "shards": 2,
        }  # fmt: skip
        pipeline = LocalPipeline(
            PipelineConfig(name=f"{self.prefix.replace('_', '-')}-t{n}"), LocalOptions(**{**defaults, **options})
        )
        self.made.append(pipeline)
        pipeline.start()
        return pipeline

    def close(self) -> None:
        for pipeline in self.made:
            pipeline.stop()
            for runtime in pipeline.paths.values():
                pipeline.client.command(f"DROP DATABASE IF EXISTS {runtime.database} SYNC")
