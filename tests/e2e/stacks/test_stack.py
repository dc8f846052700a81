"""Template assertions on the synthesized stack (synth happens once, in conftest's fixtures)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aws_cdk.assertions import Match, Template

from bxb_runtime.events.schema import glue_columns
from bxb_runtime.layout import ARCHIVE_PREFIX
from bxb_stream.deployment import (
    DATA_PREFIX,
    ERROR_PREFIX,
    HTTP_BACKUP_ERROR_PREFIX,
    HTTP_BACKUP_PREFIX,
    PARQUET_PREFIXES,
)

from .conftest import CH_ROLE, CH_URL, TOPIC_ARN, Synth

VARIANTS = ["full", "shipped", "http_only", "plain"]


def getatt(logical_id: str, attr: str = "Arn") -> dict[str, Any]:
    return {"Fn::GetAtt": [logical_id, attr]}


def statements(synth: Synth) -> list[tuple[str, dict[str, Any]]]:
    """(policy logical id, statement) for every identity policy in the template."""
    out = []
    for kind in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
        for logical_id, resource in synth.resources(kind).items():
            out += [(logical_id, s) for s in resource["Properties"]["PolicyDocument"]["Statement"]]
    return out


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


# --- stream --------------------------------------------------------------------------------


def test_stream_is_encrypted_with_a_rotated_customer_key(full: Synth) -> None:
    stream = full.one("AWS::Kinesis::Stream")
    key_id = full.logical_id(full.stack.events.key)
    assert stream["StreamEncryption"] == {"EncryptionType": "KMS", "KeyId": getatt(key_id)}
    assert stream["StreamModeDetails"] == {"StreamMode": "PROVISIONED"}
    assert stream["ShardCount"] == 4
    assert stream["RetentionPeriodHours"] == 48
    for key in full.resources("AWS::KMS::Key").values():
        assert key["Properties"]["EnableKeyRotation"] is True


def test_on_demand_stream_has_no_shard_count(shipped: Synth) -> None:
    stream = shipped.one("AWS::Kinesis::Stream")
    assert stream["StreamModeDetails"] == {"StreamMode": "ON_DEMAND"}
    assert "ShardCount" not in stream


def test_producer_policy_is_the_stream_and_its_key_only(full: Synth) -> None:
    policy = full.resources("AWS::IAM::ManagedPolicy")
    assert len(policy) == 1
    doc = next(iter(policy.values()))["Properties"]["PolicyDocument"]["Statement"]
    stream_id, key_id = full.logical_id(full.stack.events.stream), full.logical_id(full.stack.events.key)
    assert doc == [
        {
            "Action": ["kinesis:DescribeStreamSummary", "kinesis:PutRecord", "kinesis:PutRecords"],
            "Effect": "Allow",
            "Resource": getatt(stream_id),
        },
        {"Action": "kms:GenerateDataKey", "Effect": "Allow", "Resource": getatt(key_id)},
    ]


# --- storage -------------------------------------------------------------------------------


def test_archive_bucket_is_private_kms_versioned_and_logged(full: Synth) -> None:
    archive = full.stack.storage
    bucket = full.template["Resources"][full.logical_id(archive.bucket)]["Properties"]
    key_id, log_id = full.logical_id(archive.key), full.logical_id(archive.log_bucket)
    assert bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"] == [
        {
            "BucketKeyEnabled": True,
            "ServerSideEncryptionByDefault": {"KMSMasterKeyID": getatt(key_id), "SSEAlgorithm": "aws:kms"},
        }
    ]
    assert bucket["PublicAccessBlockConfiguration"] == dict.fromkeys(
        ("BlockPublicAcls", "BlockPublicPolicy", "IgnorePublicAcls", "RestrictPublicBuckets"), True
    )
    assert bucket["VersioningConfiguration"] == {"Status": "Enabled"}
    assert bucket["LoggingConfiguration"]["DestinationBucketName"] == {"Ref": log_id}
    archive, versions = bucket["LifecycleConfiguration"]["Rules"]
    assert archive["Prefix"] == ARCHIVE_PREFIX
    assert archive["Transitions"] == [
        {"StorageClass": "STANDARD_IA", "TransitionInDays": 30},
        {"StorageClass": "GLACIER_IR", "TransitionInDays": 90},
    ]
    assert "ExpirationInDays" not in archive  # the archive is the long-term copy
    assert "Prefix" not in versions and "Transitions" not in versions
    assert versions["NoncurrentVersionExpiration"] == {"NoncurrentDays": 30}
    assert versions["AbortIncompleteMultipartUpload"] == {"DaysAfterInitiation": 7}


def test_log_bucket_uses_sse_s3_and_both_buckets_deny_plain_http(full: Synth) -> None:
    archive = full.stack.storage
    log = full.template["Resources"][full.logical_id(archive.log_bucket)]["Properties"]
    assert log["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]["ServerSideEncryptionByDefault"] == {
        "SSEAlgorithm": "AES256"
    }
    denied = set()
    for policy in full.resources("AWS::S3::BucketPolicy").values():
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
            if statement.get("Condition") == {"Bool": {"aws:SecureTransport": "false"}}:
                assert statement["Effect"] == "Deny"
                denied.add(policy["Properties"]["Bucket"]["Ref"])
    assert denied == {full.logical_id(archive.bucket), full.logical_id(archive.log_bucket)}


def test_glue_table_columns_are_the_event_schema(full: Synth) -> None:
    table = full.one("AWS::Glue::Table")["TableInput"]
    descriptor = table["StorageDescriptor"]
    assert descriptor["Columns"] == [
        {"Name": c["name"], "Type": c["type"], "Comment": c["comment"]} for c in glue_columns()
    ]
    assert descriptor["SerdeInfo"]["SerializationLibrary"].endswith("ParquetHiveSerDe")
    assert full.one("AWS::Glue::Database")["DatabaseInput"]["Name"] == "bxb_stream"


# --- Firehose A: Parquet on S3 --------------------------------------------------------------


def parquet_config(synth: Synth) -> dict[str, Any]:
    ds = synth.template["Resources"][synth.logical_id(synth.stack.parquet.delivery_stream)]["Properties"]
    assert ds["DeliveryStreamType"] == "KinesisStreamAsSource"
    return ds["ExtendedS3DestinationConfiguration"]


def test_parquet_conversion_uses_the_glue_table(full: Synth) -> None:
    conversion = parquet_config(full)["DataFormatConversionConfiguration"]
    assert conversion["Enabled"] is True
    assert conversion["InputFormatConfiguration"] == {"Deserializer": {"OpenXJsonSerDe": {}}}
    assert conversion["OutputFormatConfiguration"] == {"Serializer": {"ParquetSerDe": {"Compression": "SNAPPY"}}}
    schema = conversion["SchemaConfiguration"]
    assert schema["TableName"] == {"Ref": full.logical_id(full.stack.table.table)}
    assert schema["DatabaseName"] == "bxb_stream"
    # ...and that table's columns are glue_columns() (test above), so conversion == event schema.


def test_parquet_prefixes_partitioning_and_buffering(full: Synth) -> None:
    config = parquet_config(full)
    assert config["Prefix"] == DATA_PREFIX
    assert config["ErrorOutputPrefix"] == ERROR_PREFIX
    assert "!{firehose:error-output-type}" in config["ErrorOutputPrefix"]
    assert not config["ErrorOutputPrefix"].startswith(PARQUET_PREFIXES)
    assert config["FileExtension"] == ".parquet"
    assert config["DynamicPartitioningConfiguration"]["Enabled"] is True
    assert config["BufferingHints"]["SizeInMBs"] >= 64
    assert config["CloudWatchLoggingOptions"]["Enabled"] is True
    key_id = full.logical_id(full.stack.storage.key)
    assert config["EncryptionConfiguration"] == {"KMSEncryptionConfig": {"AWSKMSKeyARN": getatt(key_id)}}


def processor_parameters(config: dict[str, Any]) -> dict[str, Any]:
    (processor,) = config["ProcessingConfiguration"]["Processors"]
    assert processor["Type"] == "Lambda"
    return {p["ParameterName"]: p["ParameterValue"] for p in processor["Parameters"]}


def test_both_paths_invoke_the_transform_with_buffer_hints(full: Synth) -> None:
    transform = getatt(full.logical_id(full.stack.transform.function))
    for config in (parquet_config(full), http_config(full)):
        params = processor_parameters(config)
        assert params["LambdaArn"] == transform
        assert params["BufferSizeInMBs"] == "1" and params["BufferIntervalInSeconds"] == "60"
        assert params["NumberOfRetries"] == "3"


# --- Firehose B: HTTP endpoint ---------------------------------------------------------------


def http_config(synth: Synth) -> dict[str, Any]:
    ds = synth.template["Resources"][synth.logical_id(synth.stack.http.delivery_stream)]["Properties"]
    assert ds["DeliveryStreamType"] == "KinesisStreamAsSource"
    return ds["HttpEndpointDestinationConfiguration"]


def test_http_path_delivers_gzip_to_the_function_url_with_a_secret_key(full: Synth) -> None:
    config = http_config(full)
    url_id = full.stack.get_logical_id(full.stack.http.url.node.default_child)
    assert config["EndpointConfiguration"]["Url"] == getatt(url_id, "FunctionUrl")
    assert "AccessKey" not in config["EndpointConfiguration"]  # never in the template
    secret_id = full.logical_id(full.stack.http.access_key)
    assert config["SecretsManagerConfiguration"]["Enabled"] is True
    assert config["SecretsManagerConfiguration"]["SecretARN"] == {"Ref": secret_id}
    assert config["RequestConfiguration"] == {"ContentEncoding": "GZIP"}
    assert config["BufferingHints"]["SizeInMBs"] <= 3  # a buffered function URL takes at most 6 MB
    assert config["RetryOptions"] == {"DurationInSeconds": 3600}
    assert config["CloudWatchLoggingOptions"]["Enabled"] is True


def test_http_backup_goes_to_its_own_prefix(full: Synth, http_only: Synth) -> None:
    for synth, mode in ((full, "AllData"), (http_only, "FailedDataOnly")):
        config = http_config(synth)
        assert config["S3BackupMode"] == mode
        backup = config["S3Configuration"]
        assert backup["Prefix"] == HTTP_BACKUP_PREFIX
        assert backup["ErrorOutputPrefix"] == HTTP_BACKUP_ERROR_PREFIX
        assert not backup["Prefix"].startswith(PARQUET_PREFIXES)
        assert backup["EncryptionConfiguration"]["KMSEncryptionConfig"]["AWSKMSKeyARN"] == getatt(
            synth.logical_id(synth.stack.storage.key)
        )


def test_access_key_secret_is_generated_in_the_firehose_shape(full: Synth) -> None:
    secret = full.one("AWS::SecretsManager::Secret")
    assert secret["GenerateSecretString"]["GenerateStringKey"] == "api_key"
    assert secret["GenerateSecretString"]["SecretStringTemplate"] == "{}"
    assert "SecretString" not in secret


# --- functions -------------------------------------------------------------------------------


def function_props(synth: Synth, construct: Any) -> dict[str, Any]:
    return synth.template["Resources"][synth.logical_id(construct.function)]["Properties"]


def test_transform_function(full: Synth) -> None:
    props = function_props(full, full.stack.transform)
    assert props["Runtime"] == "python3.12"
    assert props["Architectures"] == ["arm64"]
    assert props["Handler"] == "lambdas/transform/handler.handler"
    assert props["Environment"]["Variables"] == full.config.rules.to_env()
    assert props["Environment"]["Variables"]["BXB_HOOKS"] == "bxb_runtime.transform.example_hooks:customer_tier"
    assert props["Environment"]["Variables"]["BXB_MULTI_TENANT"] == "true"
    (layer,) = props["Layers"]
    assert layer == {
        "Fn::Join": [
            "",
            [
                "arn:aws:lambda:",
                {"Ref": "AWS::Region"},
                ":017000801446:layer:AWSLambdaPowertoolsPythonV3-python312-arm64:27",
            ],
        ]
    }
    log_id = full.logical_id(full.stack.transform.log_group)
    assert props["LoggingConfig"] == {"LogGroup": {"Ref": log_id}}
    assert full.template["Resources"][log_id]["Properties"]["RetentionInDays"] == 30


def test_ingest_function_and_url(full: Synth) -> None:
    props = function_props(full, full.stack.http.ingest)
    assert props["Handler"] == "lambdas/ingest/handler.handler"
    assert props["Runtime"] == "python3.12" and props["Architectures"] == ["arm64"]
    env = props["Environment"]["Variables"]
    assert env["BXB_CLICKHOUSE_URL"] == CH_URL
    assert env["BXB_CLICKHOUSE_DATABASE"] == "bxb"
    assert env["BXB_ORGANIZATION_ID"] == full.config.rules.organization_id
    assert env["BXB_ACCESS_KEY_SECRET_ARN"] == {"Ref": full.logical_id(full.stack.http.access_key)}
    assert ":secret:bxb/clickhouse" in json.dumps(env["BXB_CLICKHOUSE_SECRET_ARN"])
    assert full.one("AWS::Lambda::Url")["AuthType"] == "NONE"
    # The function may read exactly the two secrets.
    role_policy = full.logical_id(full.stack.http.ingest.role.node.find_child("DefaultPolicy"))
    (read,) = [
        s for pid, s in statements(full) if pid == role_policy and "secretsmanager:GetSecretValue" in s["Action"]
    ]
    rendered = json.dumps(read["Resource"])
    assert ":secret:bxb/clickhouse-??????" in rendered and full.logical_id(full.stack.http.access_key) in rendered


def test_functions_use_their_own_roles_without_managed_policies(full: Synth) -> None:
    for role in full.resources("AWS::IAM::Role").values():
        assert "ManagedPolicyArns" not in role["Properties"]


# --- ClickHouse access -----------------------------------------------------------------------


def test_clickhouse_role_trusts_the_configured_principal_with_external_id(full: Synth) -> None:
    role = full.template["Resources"][full.logical_id(full.stack.clickhouse.role)]["Properties"]
    assert role["AssumeRolePolicyDocument"]["Statement"] == [
        {
            "Action": "sts:AssumeRole",
            "Condition": {"StringEquals": {"sts:ExternalId": "bxb-external-id-1"}},
            "Effect": "Allow",
            "Principal": {"AWS": CH_ROLE},
        }
    ]


def test_clickhouse_role_defaults_to_this_account(shipped: Synth) -> None:
    role = shipped.template["Resources"][shipped.logical_id(shipped.stack.clickhouse.role)]["Properties"]
    (statement,) = role["AssumeRolePolicyDocument"]["Statement"]
    assert "Condition" not in statement
    assert ":root" in json.dumps(statement["Principal"])


def test_clickhouse_role_reads_and_moves_only_parquet_prefixes(full: Synth) -> None:
    policy_id = full.logical_id(full.stack.clickhouse.policy)
    bucket = getatt(full.logical_id(full.stack.storage.bucket))
    got = {s["Sid"]: s for pid, s in statements(full) if pid == policy_id}
    archived = [ARCHIVE_PREFIX + p for p in PARQUET_PREFIXES]
    assert sorted(got["ReadAndMoveParquet"]["Action"]) == ["s3:DeleteObject", "s3:GetObject"]

    def resources(sid: str) -> list:  # CloudFormation writes a single resource without the list
        found = got[sid]["Resource"]
        return found if isinstance(found, list) else [found]

    assert resources("ReadAndMoveParquet") == [{"Fn::Join": ["", [bucket, f"/{p}*"]]} for p in PARQUET_PREFIXES]
    assert sorted(got["WriteAndReadArchive"]["Action"]) == ["s3:GetObject", "s3:PutObject"]
    assert resources("WriteAndReadArchive") == [{"Fn::Join": ["", [bucket, f"/{p}*"]]} for p in archived]
    assert got["ListParquetPrefixes"]["Resource"] == bucket
    assert got["ListParquetPrefixes"]["Condition"] == {"StringLike": {"s3:prefix": ["events/*", "archive/events/*"]}}
    assert sorted(got["UseKeyViaS3"]["Action"]) == ["kms:Decrypt", "kms:GenerateDataKey"]
    assert got["UseKeyViaS3"]["Resource"] == getatt(full.logical_id(full.stack.storage.key))
    assert set(got) == {
        "ReadAndMoveParquet",
        "WriteAndReadArchive",
        "ListParquetPrefixes",
        "BucketLocation",
        "UseKeyViaS3",
    }
    # Never the error output, the HTTP backup, or the whole bucket.
    resources = json.dumps([s["Resource"] for s in got.values()])
    assert "errors/" not in resources and "http-backup" not in resources and '"/*"' not in resources


# --- IAM, secrets, environment ---------------------------------------------------------------


@pytest.mark.parametrize("variant", VARIANTS)
def test_no_star_resources_where_an_arn_exists(variants: dict[str, Synth], variant: str) -> None:
    synth = variants[variant]
    star = [(pid, s["Action"]) for pid, s in statements(synth) if "*" in as_list(s["Resource"])]
    # Only the Firehose L2's Glue Schema Registry read (no registry exists to name); acknowledged in cdk-nag.
    assert all(action == "glue:GetSchemaVersion" for _, action in star), star
    for _, statement in statements(synth):
        assert statement["Effect"] == "Allow" and "*" not in as_list(statement["Action"])


@pytest.mark.parametrize("variant", VARIANTS)
def test_no_secret_values_or_lookups(variants: dict[str, Synth], variant: str) -> None:
    synth = variants[variant]
    rendered = json.dumps(synth.template)
    assert '"SecretString"' not in rendered
    assert '"AccessKey"' not in rendered
    assert "{{resolve:" not in rendered
    manifest = json.loads((synth.outdir / "manifest.json").read_text())
    assert "missing" not in manifest  # no context lookups
    (artifact,) = [a for a in manifest["artifacts"].values() if a["type"] == "aws:cloudformation:stack"]
    assert artifact["environment"] == "aws://unknown-account/unknown-region"


# --- monitoring ------------------------------------------------------------------------------


def alarm_metrics(synth: Synth) -> list[tuple[str, str]]:
    return sorted(
        (a["Properties"]["Namespace"], a["Properties"]["MetricName"])
        for a in synth.resources("AWS::CloudWatch::Alarm").values()
    )


def test_alarms_cover_stream_paths_functions_and_rejections(full: Synth) -> None:
    assert alarm_metrics(full) == sorted(
        [
            ("AWS/Kinesis", "GetRecords.IteratorAgeMilliseconds"),
            ("AWS/Kinesis", "WriteProvisionedThroughputExceeded"),
            ("bxb-stream", "RecordsProcessingFailed"),
            ("AWS/Firehose", "DeliveryToS3.DataFreshness"),
            ("AWS/Firehose", "DeliveryToS3.Success"),
            ("AWS/Firehose", "DeliveryToHttpEndpoint.DataFreshness"),
            ("AWS/Firehose", "DeliveryToHttpEndpoint.Success"),
            ("AWS/Firehose", "ExecuteProcessing.Success"),
            ("AWS/Firehose", "ExecuteProcessing.Success"),
            # Where an event can stop short of billing (issue 12: nothing silently unbilled).
            ("AWS/Firehose", "FailedConversion.Records"),
            ("AWS/Firehose", "PartitionCountExceeded"),
            ("AWS/Firehose", "BackupToS3.Success"),
            ("bxb-stream", "RowsDeadLettered"),
            ("AWS/Lambda", "Errors"),
            ("AWS/Lambda", "Errors"),
            ("AWS/Lambda", "Throttles"),
            ("AWS/Lambda", "Throttles"),
        ]
    )
    template = Template.from_json(full.template)
    template.has_resource_properties(
        "AWS::CloudWatch::Alarm",
        {
            "Namespace": "bxb-stream",
            "MetricName": "RecordsProcessingFailed",
            "Dimensions": [{"Name": "service", "Value": "transform"}],
            "Statistic": "Sum",
        },
    )
    template.has_resource_properties(
        "AWS::CloudWatch::Alarm",
        {
            "MetricName": "DeliveryToS3.DataFreshness",
            "Threshold": 1200,
            "ComparisonOperator": "GreaterThanOrEqualToThreshold",
        },
    )
    template.has_resource_properties(
        "AWS::CloudWatch::Alarm",
        {"MetricName": "DeliveryToHttpEndpoint.Success", "Threshold": 1, "ComparisonOperator": "LessThanThreshold"},
    )
    template.resource_count_is("AWS::CloudWatch::Dashboard", 1)


def alarms_on(synth: Synth, metric: str) -> list[dict[str, Any]]:
    return [
        a["Properties"]
        for a in synth.resources("AWS::CloudWatch::Alarm").values()
        if a["Properties"]["MetricName"] == metric
    ]


def test_every_place_an_event_stops_short_of_billing_has_an_alarm(full: Synth, http_only: Synth) -> None:
    parquet = {"Name": "DeliveryStreamName", "Value": {"Ref": full.logical_id(full.stack.parquet.delivery_stream)}}
    # Parquet conversion failures and the partition limit send records to errors/.
    (conversion,) = alarms_on(full, "FailedConversion.Records")
    assert (conversion["Dimensions"], conversion["Statistic"], conversion["Threshold"]) == ([parquet], "Sum", 1)
    (partitions,) = alarms_on(full, "PartitionCountExceeded")
    assert (partitions["Dimensions"], partitions["Statistic"], partitions["Threshold"]) == ([parquet], "Maximum", 1)
    # The ingest function's dead letters (its EMF metric, service=ingest).
    (dead,) = alarms_on(full, "RowsDeadLettered")
    assert (dead["Namespace"], dead["Dimensions"], dead["Statistic"]) == (
        "bxb-stream",
        [{"Name": "service", "Value": "ingest"}],
        "Sum",
    )
    # The HTTP path's S3 backup: with backup_mode failed, every backed-up record gave up on the endpoint.
    http = {"Name": "DeliveryStreamName", "Value": {"Ref": http_only.logical_id(http_only.stack.http.delivery_stream)}}
    (backed_up,) = alarms_on(http_only, "BackupToS3.Records")
    assert (backed_up["Dimensions"], backed_up["Statistic"], backed_up["Threshold"]) == ([http], "Sum", 1)
    assert backed_up["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"
    # With backup_mode all every record is backed up: the count says nothing, DeliveryToHttpEndpoint.Success does.
    assert alarms_on(full, "BackupToS3.Records") == []
    for synth in (full, http_only):
        (backup,) = alarms_on(synth, "BackupToS3.Success")
        assert (backup["ComparisonOperator"], backup["Threshold"]) == ("LessThanThreshold", 1)
    # Existing: records the transform answered ProcessingFailed, and failed transform invocations per path.
    assert len(alarms_on(full, "RecordsProcessingFailed")) == 1
    assert len(alarms_on(full, "ExecuteProcessing.Success")) == 2
    # Metrics that are going away or do not mean a loss are not alarmed.
    assert alarms_on(full, "RowsLate") == [] and alarms_on(full, "RecordsLate") == []


def test_shortfall_thresholds_come_from_config(tmp_path_factory: pytest.TempPathFactory) -> None:
    from .conftest import synth

    got = synth(
        tmp_path_factory.mktemp("thresholds"),
        {
            "bxb:delivery": "both",
            "bxb:clickhouse.url": CH_URL,
            "bxb:alarms.dead_letter_rows": 10,
            "bxb:alarms.http_backup_records": "20",
            "bxb:alarms.failed_conversion_records": 30,
        },
    )
    assert [a["Threshold"] for a in alarms_on(got, "RowsDeadLettered")] == [10]
    assert [a["Threshold"] for a in alarms_on(got, "BackupToS3.Records")] == [20]
    assert [a["Threshold"] for a in alarms_on(got, "FailedConversion.Records")] == [30]


@pytest.mark.parametrize("variant", VARIANTS)
def test_dashboard_shows_every_alarm_and_its_metric(variants: dict[str, Synth], variant: str) -> None:
    synth = variants[variant]
    body = json.dumps(synth.one("AWS::CloudWatch::Dashboard")["DashboardBody"])
    for logical_id, alarm in synth.resources("AWS::CloudWatch::Alarm").items():
        assert logical_id in body  # the alarm status widget
        assert json.dumps(alarm["Properties"]["MetricName"])[1:-1] in body  # and a graph of its metric


def test_alarms_notify_an_encrypted_topic_with_email(full: Synth) -> None:
    topic = full.one("AWS::SNS::Topic")
    topic_id = next(iter(full.resources("AWS::SNS::Topic")))
    assert "Fn::GetAtt" in topic["KmsMasterKeyId"]
    for alarm in full.resources("AWS::CloudWatch::Alarm").values():
        assert alarm["Properties"]["AlarmActions"] == [{"Ref": topic_id}]
    Template.from_json(full.template).has_resource_properties(
        "AWS::SNS::Subscription", {"Protocol": "email", "Endpoint": "oncall@example.com", "TopicArn": {"Ref": topic_id}}
    )
    Template.from_json(full.template).has_resource_properties(
        "AWS::SNS::TopicPolicy",
        {
            "PolicyDocument": {
                "Statement": Match.array_with(
                    [Match.object_like({"Effect": "Deny", "Condition": {"Bool": {"aws:SecureTransport": "false"}}})]
                )
            }
        },
    )


def test_existing_topic_is_used_as_is(http_only: Synth) -> None:
    assert http_only.resources("AWS::SNS::Topic") == {}
    for alarm in http_only.resources("AWS::CloudWatch::Alarm").values():
        assert alarm["Properties"]["AlarmActions"] == [TOPIC_ARN]


# --- delivery-path switches ------------------------------------------------------------------


def test_shipped_config_is_the_s3_path_only(shipped: Synth) -> None:
    assert len(shipped.resources("AWS::KinesisFirehose::DeliveryStream")) == 1
    assert "ExtendedS3DestinationConfiguration" in shipped.one("AWS::KinesisFirehose::DeliveryStream")
    assert shipped.resources("AWS::Lambda::Url") == {}
    assert len(shipped.resources("AWS::Lambda::Function")) == 1
    assert ("AWS/Firehose", "DeliveryToHttpEndpoint.Success") not in alarm_metrics(shipped)


def test_http_only_has_no_parquet_path(http_only: Synth) -> None:
    assert "HttpEndpointDestinationConfiguration" in http_only.one("AWS::KinesisFirehose::DeliveryStream")
    assert http_only.resources("AWS::Glue::Table") == {}
    assert "ClickHouseRoleArn" not in http_only.template["Outputs"]
    assert ("AWS/Firehose", "DeliveryToS3.Success") not in alarm_metrics(http_only)


# --- outputs ---------------------------------------------------------------------------------


def test_outputs_for_producers_and_clickhouse(full: Synth) -> None:
    outputs = full.template["Outputs"]
    for name in (
        "StreamName",
        "StreamArn",
        "ProducerPolicyArn",
        "BucketName",
        "IngestFunctionUrl",
        "ClickHouseRoleArn",
    ):
        assert name in outputs
    events = json.dumps(outputs["ClickHouseS3QueueEvents"]["Value"])
    assert "S3Queue('https://" in events and "/events/**/*.parquet', 'Parquet'" in events
    assert "extra_credentials(role_arn = '" in events
    assert full.logical_id(full.stack.clickhouse.role) in events
    assert "RegionalDomainName" in events
    assert "ClickHouseS3QueueLate" not in outputs  # lateness is decided in ClickHouse, not by prefix
