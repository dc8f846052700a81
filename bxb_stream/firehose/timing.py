"""Wall time per pipeline stage, summed per call site (not per record), for benchmarks and progress."""

from __future__ import annotations

from time import perf_counter

# Stage names, in pipeline order.
GET_RECORDS = "get_records"
DEAGGREGATE = "deaggregate"
REQUEST = "request"  # building Firehose's event for the transform
INVOKE = "invoke"  # the Lambda wire: JSON round trips of request and response
TRANSFORM = "transform"  # the handler itself
CHECK = "check"  # judging the response
PARQUET = "parquet"  # OpenX conversion and Parquet encoding
S3_PUT = "s3_put"
CHECKPOINT = "checkpoint"
STAGES = (GET_RECORDS, DEAGGREGATE, REQUEST, INVOKE, TRANSFORM, CHECK, PARQUET, S3_PUT, CHECKPOINT)


class Stages:
    """Seconds spent per stage. ``lap(stage, since)`` adds ``now - since`` and returns ``now``."""

    __slots__ = ("seconds",)

    def __init__(self) -> None:
        self.seconds: dict[str, float] = dict.fromkeys(STAGES, 0.0)

    def lap(self, stage: str, since: float) -> float:
        now = perf_counter()
        self.seconds[stage] += now - since
        return now

    def total(self) -> float:
        return sum(self.seconds.values())
