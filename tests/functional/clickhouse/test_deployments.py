"""single | cluster | cloud: every statement of every migration parses on the embedded engine, and
single mode renders byte for byte what earlier releases applied (their checksums are recorded)."""

from __future__ import annotations

import pytest

from bxb_runtime.clickhouse import tables as t
from bxb_runtime.config import ConfigError
from bxb_runtime.events.schema import FIELDS, Field, Kind
from bxb_stream.clickhouse.ddl import MARK, create_database, migrations, migrations_table, render_sql
from bxb_stream.clickhouse.settings import ClickHouseSettings, Deployment

BUCKET = "https://bxb-events.s3.eu-west-1.amazonaws.com"
ROLE = "arn:aws:iam::123456789012:role/clickhouse-s3"
V2 = (*FIELDS, Field("region", Kind.STRING, "Where it happened.", nullable=True, max_length=64, added_in=2))

# Checksums recorded by databases applied before deployments and schema versions existed
# (migration 2 as of the resolver's key-hash joins and PREWHERE reads: nothing had been deployed with the
# one before).
RELEASED_CHECKSUMS = {
    "named": [
        "a741405fae984f3c4862e5308fe1c05fe15387c2ff0e491d7a9877fe254a9c30",
        "8c38a16c54b98cdb5da49e8aee51eef0e187c071ae5426391f21458507a161fb",
        "6519bc7df3193e3d292efcff095b65e868dfa5822de2a3ab86d07df61db96c61",
    ],
    "role": [
        "a741405fae984f3c4862e5308fe1c05fe15387c2ff0e491d7a9877fe254a9c30",
        "8c38a16c54b98cdb5da49e8aee51eef0e187c071ae5426391f21458507a161fb",
        "275a8b8f693b5b6c63bc7a26a9351b642330cca9bd791d2486ee8200f29f6e0c",
    ],
}


def settings(deployment: str = "single", **kw) -> ClickHouseSettings:
    base = {"bucket_url": BUCKET, "deployment": deployment}
    if deployment == "cluster":
        base["cluster_name"] = "bxb_cluster"
    if deployment == "cloud" or "named_collection" not in kw:
        base["role_arn"] = ROLE
    return ClickHouseSettings(**{**base, **kw})


def test_single_mode_renders_what_was_applied_before():
    named = ClickHouseSettings(bucket_url=BUCKET, named_collection="bxb_s3")
    role = ClickHouseSettings(bucket_url=BUCKET, role_arn=ROLE)
    assert [m.checksum for m in migrations(named)] == RELEASED_CHECKSUMS["named"]
    assert [m.checksum for m in migrations(role)] == RELEASED_CHECKSUMS["role"]
    # Adding a field leaves the applied migrations as they were; only a new one appears.
    later = migrations(named, V2, ((2, 4),))
    assert [m.checksum for m in later[:3]] == RELEASED_CHECKSUMS["named"]
    assert [m.version for m in later] == [1, 2, 3, 4]


@pytest.mark.parametrize("deployment", ["single", "cluster", "cloud"])
@pytest.mark.parametrize("fields", [FIELDS, V2], ids=["v1", "v2"])
def test_every_statement_parses_on_the_engine(clickhouse_engine, deployment, fields):
    client = clickhouse_engine.client()
    s = settings(deployment)
    statements = [create_database(s), migrations_table(s)]
    for m in migrations(s, fields, ((2, 4),) if fields is V2 else ()):
        statements.extend(m.statements)
    for statement in statements:
        formatted = client.query("SELECT formatQuery(%(q)s)", parameters={"q": statement}).result_rows[0][0]
        assert formatted, statement


def test_single_uses_plain_engines_and_the_non_replicated_window():
    sql = render_sql(settings("single", insert_dedup_window=555))
    assert "Replicated" not in sql and "ON CLUSTER" not in sql and "Distributed" not in sql
    assert sql.count("non_replicated_deduplication_window = 555") == 2
    assert "PARTITION BY toYYYYMM(inserted_at)" in sql


def test_cluster_replicates_shards_by_transaction_and_splits_the_queue():
    s = settings("cluster", insert_dedup_window=555, queue_processing_threads=3, queue_replicas=4)
    sql = render_sql(s)
    assert "non_replicated" not in sql
    assert sql.count("replicated_deduplication_window = 555") == 2
    assert "ON CLUSTER bxb_cluster ENGINE = Replicated('/clickhouse/bxb/databases/bxb', '{shard}', '{replica}')" in sql
    for table in (t.EVENTS_RAW, t.LEDGER, t.DEAD_LETTER, t.LATE_DECISIONS):
        create = sql.split(f"TABLE IF NOT EXISTS bxb.{table} (")[1].split(";\n")[0]
        assert "ENGINE = ReplicatedMergeTree\n" in create, table
    assert "ENGINE = ReplicatedAggregatingMergeTree" in sql
    # Every copy of a transaction reaches one shard, where the resolver compares it.
    key = "cityHash64(organization_id, transaction_id)"
    assert f"ENGINE = Distributed(bxb_cluster, bxb, {t.EVENTS_RAW}, {key})" in sql
    assert f"ENGINE = Distributed(bxb_cluster, bxb, {t.LATE_DECISIONS}, {key})" in sql
    assert f"TO bxb.{t.EVENTS_RAW}_all\n" in sql
    # One block sequence per shard, and a re-read window below the watermark.
    raw = sql.split(f"TABLE IF NOT EXISTS bxb.{t.EVENTS_RAW} (")[1].split(";\n")[0]
    assert "PARTITION BY tuple()" in raw
    assert (
        f"{MARK} >= since AND {MARK} <= upto" in sql
        and f"({MARK} > wm OR unstarted)" in sql
        and "toUInt128(10000), 64)" in sql
    )
    # One keeper path for every replica (no macro in it), threads and buckets as the docs advise.
    assert "keeper_path = '/clickhouse/bxb/s3queue/bxb/events_queue'" in sql
    assert "processing_threads_num = 3" in sql and "buckets = 12" in sql
    # A close taken on one shard applies to every shard's resolver.
    assert f"max(until) AS closed_until FROM bxb.{t.PERIOD_CLOSES}_all" in sql
    assert f"Distributed(bxb_cluster, bxb, {t.PERIOD_CLOSES}, rand())" in sql
    # Inside a Replicated database no table names a Keeper path (refused there by default).
    assert "ReplicatedMergeTree(" not in sql


def test_cloud_uses_shared_defaults_and_a_role():
    sql = render_sql(settings("cloud"))
    assert "ON CLUSTER" not in sql and "Replicated" not in sql and "non_replicated" not in sql
    assert "ENGINE = MergeTree\n" in sql  # Cloud makes it SharedMergeTree
    assert "replicated_deduplication_window = 10000" in sql
    assert f"extra_credentials(role_arn = '{ROLE}')" in sql
    assert "Distributed" not in sql


@pytest.mark.parametrize(
    ("kwargs", "key", "words"),
    [
        ({"deployment": "galaxy"}, "deployment", "single, cluster, cloud"),
        ({"deployment": "cluster"}, "cluster_name", "cluster's name"),
        ({"deployment": "cluster", "cluster_name": "bad-name"}, "cluster_name", "identifier"),
        ({"cluster_name": "c"}, "cluster_name", "only for deployment cluster"),
        ({"deployment": "cloud", "named_collection": "nc"}, "role_arn", "IAM role"),
    ],
)
def test_bad_deployment_settings_name_the_key(kwargs, key, words):
    with pytest.raises(ConfigError) as err:
        ClickHouseSettings(bucket_url=BUCKET, **{"named_collection": "nc", **kwargs})
    assert err.value.key == key and words in str(err.value)


def test_deployment_comes_from_the_environment():
    env = {"BXB_CLICKHOUSE_BUCKET_URL": BUCKET, "BXB_CLICKHOUSE_DEPLOYMENT": "cluster"}
    s = ClickHouseSettings.from_env(env, named_collection="nc", cluster_name="c1")
    assert s.deployment is Deployment.CLUSTER and s.cluster_name == "c1"


def test_the_cli_renders_each_deployment_and_names_a_bad_one(capsys):
    from bxb_stream.cli import main

    base = ["clickhouse", "ddl", "--bucket-url", BUCKET, "--role-arn", ROLE]
    assert main([*base, "--deployment", "cluster", "--cluster-name", "prod"]) == 0
    out = capsys.readouterr().out
    assert "ON CLUSTER prod ENGINE = Replicated(" in out and "Distributed(prod, bxb, events_raw" in out
    assert main([*base, "--deployment", "cloud"]) == 0
    assert "ReplicatedMergeTree" not in capsys.readouterr().out
    assert main([*base, "--deployment", "cluster"]) == 2
    err = capsys.readouterr().err
    assert "cluster_name" in err.lower() and "Traceback" not in err
