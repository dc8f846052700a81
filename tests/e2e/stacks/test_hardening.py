"""The hardened deploy (issue 13, item 5): each measure as the template states it, and its config key."""

from __future__ import annotations

import json
from typing import Any

import pytest

from bxb_runtime.layout import ARCHIVE_PREFIX, ERRORS_PREFIX, HTTP_BACKUP_PREFIX
from bxb_stream.deployment import PARQUET_PREFIXES, PipelineConfig

from .conftest import CH_SESSION, Synth
from .test_stack import as_list, getatt, statements

# CloudFormation's pseudo parameters, to read ARNs built with Fn::Join.
PSEUDO = {"AWS::Partition": "aws", "AWS::Region": "eu-west-1", "AWS::AccountId": "111122223333"}


def render(value: Any) -> Any:
    """A template value with Fn::Join and pseudo-parameter Refs evaluated (other intrinsics kept)."""
    if isinstance(value, dict) and "Fn::Join" in value:
        separator, parts = value["Fn::Join"]
        rendered = [render(p) for p in parts]
        if all(isinstance(p, str) for p in rendered):
            return separator.join(rendered)
        return {"Fn::Join": [separator, rendered]}
    if isinstance(value, dict) and value.get("Ref") in PSEUDO:
        return PSEUDO[value["Ref"]]
    return value


def function_props(synth: Synth, construct: Any) -> dict[str, Any]:
    return synth.template["Resources"][synth.logical_id(construct.function)]["Properties"]


# --- reserved concurrency ------------------------------------------------------------------------------


def test_transform_has_reserved_concurrency_and_ingest_a_cap(full: Synth, shipped: Synth) -> None:
    assert function_props(full, full.stack.transform)["ReservedConcurrentExecutions"] == 50
    assert function_props(full, full.stack.http.ingest)["ReservedConcurrentExecutions"] == 5
    # The shipped defaults.
    assert function_props(shipped, shipped.stack.transform)["ReservedConcurrentExecutions"] == 20
    assert PipelineConfig().http.ingest_max_concurrency == 10


def test_zero_concurrency_means_the_shared_pool_not_a_disabled_function(plain: Synth) -> None:
    # Lambda reads ReservedConcurrentExecutions=0 as "never run": 0 in config leaves the property out.
    for construct in (plain.stack.transform, plain.stack.http.ingest):
        assert "ReservedConcurrentExecutions" not in function_props(plain, construct)


# --- the stack's key for log groups and the access key ----------------------------------------------------


def test_every_log_group_is_named_under_the_stack_and_encrypted_with_its_key(full: Synth) -> None:
    key = getatt(full.logical_id(full.stack.storage.key))
    groups = full.resources("AWS::Logs::LogGroup")
    names = sorted(g["Properties"]["LogGroupName"] for g in groups.values())
    assert names == [
        "/bxb-stream/firehose/http",
        "/bxb-stream/firehose/parquet",
        "/bxb-stream/ingest",
        "/bxb-stream/transform",
    ]
    for group in groups.values():
        assert group["Properties"]["KmsKeyId"] == key


def test_key_policy_lets_cloudwatch_logs_use_the_key_for_these_groups_only(full: Synth) -> None:
    key = full.template["Resources"][full.logical_id(full.stack.storage.key)]["Properties"]
    (statement,) = [s for s in key["KeyPolicy"]["Statement"] if s.get("Sid") == "CloudWatchLogsForThisStacksLogGroups"]
    assert render(statement["Principal"]["Service"]) == "logs.eu-west-1.amazonaws.com"
    assert list(statement["Condition"]) == ["ArnLike"]
    allowed = render(statement["Condition"]["ArnLike"]["kms:EncryptionContext:aws:logs:arn"])
    assert allowed == "arn:aws:logs:eu-west-1:111122223333:log-group:/bxb-stream/*"
    assert "kms:Decrypt*" in statement["Action"] and "kms:GenerateDataKey*" in statement["Action"]


def test_access_key_secret_is_encrypted_with_the_stack_key(full: Synth) -> None:
    secret = full.template["Resources"][full.logical_id(full.stack.http.access_key)]["Properties"]
    assert secret["KmsKeyId"] == getatt(full.logical_id(full.stack.storage.key))
    # Firehose may decrypt it, through Secrets Manager only.
    policy_id = full.logical_id(full.stack.http.role.policy)
    (decrypt,) = [
        s for pid, s in statements(full) if pid == policy_id and s.get("Sid") == "DecryptAccessKeyViaSecretsManager"
    ]
    assert decrypt["Action"] == "kms:Decrypt"
    assert render(decrypt["Condition"]["StringEquals"]["kms:ViaService"]) == "secretsmanager.eu-west-1.amazonaws.com"


def test_stack_key_encryption_can_be_switched_off(plain: Synth) -> None:
    for group in plain.resources("AWS::Logs::LogGroup").values():
        assert "KmsKeyId" not in group["Properties"]
    assert "KmsKeyId" not in plain.template["Resources"][plain.logical_id(plain.stack.http.access_key)]["Properties"]
    key = plain.template["Resources"][plain.logical_id(plain.stack.storage.key)]["Properties"]
    assert "logs." not in json.dumps(key["KeyPolicy"])


# --- Firehose roles: their own prefixes, never archive/ -------------------------------------------------


def s3_grants(synth: Synth) -> list[tuple[str, str, str]]:
    """(policy, action, resource) for every S3 action any identity policy allows."""
    out = []
    for policy_id, statement in statements(synth):
        for action in as_list(statement["Action"]):
            if action.startswith("s3:"):
                out += [(policy_id, action, json.dumps(r)) for r in as_list(statement["Resource"])]
    return out


@pytest.mark.parametrize("variant", ["full", "shipped", "http_only", "plain"])
def test_nothing_may_delete_or_overwrite_the_archive_but_clickhouses_move(
    variants: dict[str, Synth], variant: str
) -> None:
    synth = variants[variant]
    clickhouse = synth.logical_id(synth.stack.clickhouse.policy) if synth.stack.clickhouse else None
    for policy_id, action, resource in s3_grants(synth):
        assert "*" not in action, (policy_id, action)  # no s3:DeleteObject*, s3:Put*, ...
        assert not resource.endswith('"/*"]]}'), (policy_id, resource)  # never every object of the bucket
        if f"/{ARCHIVE_PREFIX}" in resource:
            # S3Queue's move writes its own copy there; nothing deletes under archive/.
            assert policy_id == clickhouse and action in ("s3:PutObject", "s3:GetObject"), (policy_id, action)
        if action.startswith("s3:Delete"):
            assert policy_id == clickhouse and any(f'/{p}*"' in resource for p in PARQUET_PREFIXES), resource


def firehose_object_grants(synth: Synth, role: Any) -> dict[str, list[str]]:
    policy_id = synth.logical_id(role.policy)
    (write,) = [s for pid, s in statements(synth) if pid == policy_id and s.get("Sid") == "WriteOwnPrefixes"]
    bucket = getatt(synth.logical_id(synth.stack.storage.bucket))
    prefixes = []
    for resource in write["Resource"]:
        target, suffix = resource["Fn::Join"][1]
        assert target == bucket
        prefixes.append(suffix.lstrip("/"))
    return {"actions": sorted(write["Action"]), "prefixes": sorted(prefixes)}


def test_firehose_roles_write_only_under_their_own_prefixes(full: Synth) -> None:
    writes = ["s3:AbortMultipartUpload", "s3:GetObject", "s3:PutObject"]
    assert firehose_object_grants(full, full.stack.parquet.role) == {
        "actions": writes,
        "prefixes": sorted(f"{p}*" for p in (*PARQUET_PREFIXES, ERRORS_PREFIX)),
    }
    assert firehose_object_grants(full, full.stack.http.role) == {
        "actions": writes,
        "prefixes": sorted([f"{HTTP_BACKUP_PREFIX}*", "http-backup-errors/*"]),
    }


def test_firehose_roles_have_no_l2_grants_and_trust_only_this_accounts_firehose(full: Synth) -> None:
    for construct in (full.stack.parquet, full.stack.http):
        role = full.template["Resources"][full.logical_id(construct.role.role)]["Properties"]
        (trust,) = role["AssumeRolePolicyDocument"]["Statement"]
        assert trust["Principal"] == {"Service": "firehose.amazonaws.com"}
        assert render(trust["Condition"]["StringEquals"]["aws:SourceAccount"]) == "111122223333"
        # The L2's own "Destination Role" (whole-bucket read/write) is never created.
        assert construct.delivery_stream.node.try_find_child("S3 Destination Role") is None
        assert construct.delivery_stream.node.try_find_child("Http Destination Role") is None
        ds = full.template["Resources"][full.logical_id(construct.delivery_stream)]
        assert full.logical_id(construct.role.policy) in ds["DependsOn"]  # created once the role may work
    http_trust = full.template["Resources"][full.logical_id(full.stack.http.role.role)]["Properties"]
    condition = http_trust["AssumeRolePolicyDocument"]["Statement"][0]["Condition"]["ArnLike"]["aws:SourceArn"]
    assert render(condition) == "arn:aws:firehose:eu-west-1:111122223333:deliverystream/bxb-stream-http"


def test_firehose_roles_invoke_only_the_transform_and_read_only_the_glue_table(full: Synth) -> None:
    transform = getatt(full.logical_id(full.stack.transform.function))
    for construct in (full.stack.parquet, full.stack.http):
        policy_id = full.logical_id(construct.role.policy)
        got = {s["Sid"]: s for pid, s in statements(full) if pid == policy_id}
        assert got["InvokeTransform"]["Resource"] == transform  # not "<arn>:*"
    got = {s["Sid"]: s for pid, s in statements(full) if pid == full.logical_id(full.stack.parquet.role.policy)}
    tables = [render(r) for r in got["ReadSchema"]["Resource"]]
    assert tables == [
        "arn:aws:glue:eu-west-1:111122223333:catalog",
        "arn:aws:glue:eu-west-1:111122223333:database/bxb_stream",
        "arn:aws:glue:eu-west-1:111122223333:table/bxb_stream/events",
    ]


# --- lifecycle ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", ["full", "shipped", "http_only", "plain"])
def test_only_the_archive_moves_to_colder_classes(variants: dict[str, Synth], variant: str) -> None:
    synth = variants[variant]
    bucket = synth.template["Resources"][synth.logical_id(synth.stack.storage.bucket)]["Properties"]
    for rule in bucket["LifecycleConfiguration"]["Rules"]:
        if "Transitions" in rule or "ExpirationInDays" in rule or "NoncurrentVersionTransitions" in rule:
            assert rule.get("Prefix") == ARCHIVE_PREFIX, rule


# --- ClickHouse role: another account must prove it acts for us -------------------------------------------


def test_clickhouse_role_can_require_a_session_name_instead(plain: Synth) -> None:
    role = plain.template["Resources"][plain.logical_id(plain.stack.clickhouse.role)]["Properties"]
    (statement,) = role["AssumeRolePolicyDocument"]["Statement"]
    assert statement["Condition"] == {"StringEquals": {"sts:RoleSessionName": CH_SESSION}}
    # ...and the ENGINE clause the stack outputs sends it.
    events = json.dumps(plain.template["Outputs"]["ClickHouseS3QueueEvents"]["Value"])
    assert f"role_session_name = '{CH_SESSION}'))" in events


# --- the ingest function knows its delivery stream ------------------------------------------------------


@pytest.mark.parametrize("variant", ["full", "http_only", "plain"])
def test_ingest_is_told_the_arn_of_its_own_delivery_stream(variants: dict[str, Synth], variant: str) -> None:
    synth = variants[variant]
    env = function_props(synth, synth.stack.http.ingest)["Environment"]["Variables"]
    delivery = synth.template["Resources"][synth.logical_id(synth.stack.http.delivery_stream)]["Properties"]
    assert delivery["DeliveryStreamName"] == synth.config.http_delivery_stream_name == "bxb-stream-http"
    expected = f"arn:aws:firehose:eu-west-1:111122223333:deliverystream/{delivery['DeliveryStreamName']}"
    assert render(env["BXB_FIREHOSE_SOURCE_ARN"]) == expected
