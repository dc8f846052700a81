"""The ``bxb-stream plan`` command: output formats, schema, the cdk snippet, and exit code 2 on bad input."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from bxb_stream.plan.cdk import CDK_CONTEXT_KEYS
from bxb_stream.plan.render import load_schema

Run = Callable[..., tuple[int, str, str]]
SEED = ("--events-per-sec", "10000", "--avg-bytes", "1024")


def validate(doc: dict) -> None:
    import jsonschema  # pinned in requirements-dev.txt: a missing one must fail, not skip

    schema = load_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.validate(doc, schema, cls=jsonschema.Draft202012Validator)


@pytest.mark.parametrize(
    "extra",
    [
        (),
        ("--aggregate",),
        ("--paths", "http"),
        ("--paths", "s3", "--retention-hours", "720", "--glacier-class", "flexible"),
        ("--peak-factor", "3", "--headroom", "0.2", "--region", "us-east-1"),
        ("--refresh-seconds", "60", "--resolve-batch-rows", "1000", "--usage-batch-rows", "1000"),
    ],
)
def test_json_output_matches_schema(run_plan: Run, extra: tuple[str, ...]) -> None:
    code, out, err = run_plan(*SEED, "--format", "json", *extra)
    assert code == 0, err
    doc = json.loads(out)
    validate(doc)
    assert doc["total"]["monthly_usd"] == min(doc["total"]["provisioned_usd"], doc["total"]["on_demand_usd"])
    parts = doc["kinesis"]["provisioned"]["total_usd"] + sum(doc[s]["total_usd"] for s in ("firehose", "lambda", "s3"))
    assert doc["total"]["provisioned_usd"] == pytest.approx(parts, abs=0.05)


def test_json_seed_figures(run_plan: Run) -> None:
    doc = json.loads(run_plan(*SEED, "--format", "json")[1])
    assert doc["kinesis"]["shards"]["required"] == 10
    assert doc["kinesis"]["cheaper_mode"] == "provisioned"
    assert doc["comparison"].startswith("Kinesis provisioned is cheaper than on-demand by $")
    ctx = doc["cdk_context"]
    assert ctx["bxb:stream.mode"] == "provisioned" and ctx["bxb:stream.shard_count"] == 10
    assert set(ctx) <= set(CDK_CONTEXT_KEYS.values())
    assert doc["aggregation"]["monthly_usd_with"] < doc["aggregation"]["monthly_usd_without"]


def test_on_demand_snippet_has_no_shard_count(run_plan: Run, write_prices: Callable[..., Path]) -> None:
    # With no per-stream charge (On-demand Advantage style), a trickle is cheaper on demand.
    path = write_prices({"kinesis.ondemand.stream_hour": 0})
    doc = json.loads(
        run_plan("--events-per-sec", "1", "--avg-bytes", "200", "--prices", str(path), "--format", "json")[1]
    )
    assert doc["cdk_context"]["bxb:stream.mode"] == "on-demand"
    assert "bxb:stream.shard_count" not in doc["cdk_context"]


def test_table_output(run_plan: Run) -> None:
    code, out, _ = run_plan(*SEED)
    assert code == 0
    assert "10 shards" in out
    assert "Kinesis provisioned is cheaper than on-demand by $" in out
    assert '"bxb:s3.buffer_interval_seconds": 300' in out
    assert "Latency" in out and "end to end" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (("--events-per-sec", "0", "--avg-bytes", "1024"), "--events-per-sec must be a positive number"),
        (("--events-per-sec", "-5", "--avg-bytes", "1024"), "--events-per-sec must be a positive number"),
        (("--events-per-sec", "10", "--avg-bytes", "-1"), "--avg-bytes must be a positive number"),
        (("--events-per-sec", "nan", "--avg-bytes", "10"), "--events-per-sec must be a positive number"),
        ((*SEED, "--peak-factor", "0.5"), "--peak-factor must be at least 1"),
        ((*SEED, "--paths", "s3,kafka"), "unknown path 'kafka'"),
        ((*SEED, "--retention-hours", "12"), "--retention-hours must be in [24, 8760]"),
        ((*SEED, "--s3-buffer-mib", "32"), "--s3-buffer-mib must be in [64, 128]"),
        ((*SEED, "--transform-rps", "0"), "--transform-rps must be a positive number"),
        ((*SEED, "--refresh-seconds", "0"), "--refresh-seconds must be an integer in [1, 3600]"),
        ((*SEED, "--resolve-batch-rows", "5"), "--resolve-batch-rows must be an integer in [1000, 10000000]"),
        ((*SEED, "--region", "mars-north-1"), "unknown region 'mars-north-1'"),
    ],
)
def test_bad_input_exits_2_naming_the_problem(run_plan: Run, argv: tuple[str, ...], message: str) -> None:
    code, out, err = run_plan(*argv)
    assert code == 2
    assert out == ""
    assert message in err
    assert err.startswith("bxb-stream plan: error: ")


def test_missing_price_key_exits_2(run_plan: Run, write_prices: Callable[..., Path]) -> None:
    path = write_prices({"firehose.format_conversion_gb": None})
    code, _, err = run_plan(*SEED, "--prices", str(path))
    assert code == 2
    assert "missing price key 'firehose.format_conversion_gb'" in err


def test_argparse_errors_also_exit_2(run_plan: Run) -> None:
    assert run_plan("--avg-bytes", "10")[0] == 2  # --events-per-sec is required
    assert run_plan(*SEED, "--format", "yaml")[0] == 2


def test_registered_in_main_cli() -> None:
    from bxb_stream.cli import build_parser

    args = build_parser().parse_args(["plan", *SEED])
    assert args.command == "plan"


@pytest.mark.parametrize("paths", ["s3", "http", "s3,http"])
def test_cdk_snippet_is_accepted_by_the_deployment_config(run_plan: Run, paths: str) -> None:
    # The snippet must be something `cdk synth` takes: build the CDK app's config object from it, as is.
    from bxb_stream import deployment

    url = "https://clickhouse.example.com:8443"
    doc = json.loads(run_plan(*SEED, "--paths", paths, "--clickhouse-url", url, "--format", "json")[1])
    config = deployment.PipelineConfig.from_context(doc["cdk_context"])
    assert config.stream.shard_count == doc["kinesis"]["shards"]["required"]
    assert config.delivery == {"s3": "s3", "http": "http", "s3,http": "both"}[paths]
    assert config.clickhouse.url == (url if "http" in paths else "")


def test_defaults_are_what_the_cdk_app_deploys(run_plan: Run) -> None:
    from bxb_stream.deployment import PipelineConfig

    deployed = PipelineConfig()
    doc = json.loads(run_plan(*SEED, "--format", "json")[1])
    assert doc["inputs"]["workload"]["paths"] == ["s3"]  # bxb:delivery defaults to s3: one Firehose is costed
    assert doc["firehose"]["lines"][0]["item"].startswith("ingestion, 1 stream ")
    pipeline = doc["inputs"]["pipeline"]
    assert pipeline["transform_memory_mb"] == deployed.transform_memory_mib == 512
    assert pipeline["ingest_memory_mb"] == deployed.http.ingest_memory_mib
    assert pipeline["s3_buffer_seconds"] == deployed.s3.buffer_interval_seconds
    assert pipeline["expiration_days"] == deployed.s3.expiration_days == 0
    ctx = doc["cdk_context"]
    assert ctx["bxb:delivery"] == "s3" and ctx["bxb:transform_memory_mib"] == 512
    assert "bxb:s3.expiration_days" not in ctx  # never an expiry for the billing archive unless asked
    assert any("never expired" in note for note in doc["notes"])


def test_expiry_only_when_asked(run_plan: Run) -> None:
    doc = json.loads(run_plan(*SEED, "--expiration-days", "400", "--archive-days", "730", "--format", "json")[1])
    assert doc["cdk_context"]["bxb:s3.expiration_days"] == 400
    glacier = next(line for line in doc["s3"]["lines"] if line["item"].startswith("Glacier instant storage"))
    assert glacier["item"] == "Glacier instant storage (310 d)"  # 400 days held, 90 of them before Glacier
    assert not any("never expired" in note for note in doc["notes"])


def test_defaults_from_a_given_cdk_json(run_plan: Run, tmp_path: Path) -> None:
    cdk = json.loads((Path(__file__).resolve().parents[3] / "cdk.json").read_text())
    cdk["context"].update(
        {
            "bxb:delivery": "both",
            "bxb:clickhouse.url": "https://ch.example.com:8443",
            "bxb:transform_memory_mib": 1024,
            "bxb:s3.buffer_interval_seconds": 120,
            "bxb:s3.expiration_days": 400,
            "bxb:stream.retention_hours": 48,
        }
    )
    path = tmp_path / "cdk.json"
    path.write_text(json.dumps(cdk))
    doc = json.loads(run_plan(*SEED, "--config", str(path), "--format", "json")[1])
    assert doc["inputs"]["workload"]["paths"] == ["s3", "http"]
    assert doc["inputs"]["workload"]["retention_hours"] == 48
    assert doc["inputs"]["pipeline"]["transform_memory_mb"] == 1024
    assert doc["inputs"]["pipeline"]["s3_buffer_seconds"] == 120
    ctx = doc["cdk_context"]
    assert ctx["bxb:clickhouse.url"] == "https://ch.example.com:8443"
    assert "bxb:s3.expiration_days" not in ctx  # already in that cdk.json: nothing to suggest
    assert run_plan(*SEED, "--config", str(tmp_path / "nope.json"))[0] == 2


def test_http_path_without_a_clickhouse_url_suggests_no_context(run_plan: Run) -> None:
    code, out, _ = run_plan(*SEED, "--paths", "s3,http", "--format", "json")
    assert code == 0
    doc = json.loads(out)
    validate(doc)
    assert doc["cdk_context"] is None
    assert any("--clickhouse-url" in note for note in doc["notes"])
    code, out, _ = run_plan(*SEED, "--paths", "http")
    assert code == 0 and "Suggested cdk.json context" not in out and "--clickhouse-url" in out


@pytest.mark.parametrize(
    ("extra", "key"),
    [
        (("--http-buffer-seconds", "900"), "bxb:alarms.http_freshness_seconds"),  # the freshness alarm needs more
        (("--processor-buffer-mib", "0.5"), "bxb:s3.processor_buffer_size_mib"),  # the app takes whole MiB
        (("--http-buffer-mib", "10"), "bxb:http.buffer_size_mib"),  # the function URL takes 6 MB
    ],
)
def test_context_the_app_would_refuse_is_not_suggested(run_plan: Run, extra: tuple[str, ...], key: str) -> None:
    argv = (*SEED, "--paths", "s3,http", "--clickhouse-url", "https://ch.example.com:8443", *extra, "--format", "json")
    code, out, err = run_plan(*argv)
    assert code == 0, err
    doc = json.loads(out)
    assert doc["cdk_context"] is None
    assert any("would not deploy" in note and key in note for note in doc["notes"])
