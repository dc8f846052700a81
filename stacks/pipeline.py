"""The bxb-stream stack, composed from the constructs in this package.

Environment-agnostic: no lookups; region and account are CloudFormation pseudo parameters.
"""

from __future__ import annotations

from aws_cdk import App, CfnOutput, Stack
from aws_cdk import aws_kinesisfirehose as firehose
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

from bxb_stream.deployment import PARQUET_PREFIXES, PipelineConfig
from bxb_stream.layout import ARCHIVE_PREFIX
from stacks.delivery import HttpDelivery, ParquetDelivery
from stacks.functions import INGEST_DIR, INGEST_REQUIREMENTS, TRANSFORM_DIR, TRANSFORM_REQUIREMENTS, PythonFunction
from stacks.monitoring import FirehosePath, PipelineMonitoring
from stacks.nag import acknowledge
from stacks.storage import ArchiveStorage, ClickHouseReadRole, EventsTable
from stacks.streaming import EventStream


def s3queue_engine(bucket_domain: str, prefix: str, role_arn: str) -> str:
    """The ENGINE clause pointing a ClickHouse S3Queue table at one Parquet prefix of the archive."""
    return (
        f"S3Queue('https://{bucket_domain}/{prefix}**/*.parquet', 'Parquet', "
        f"extra_credentials(role_arn = '{role_arn}'))"
    )


class BxbStreamStack(Stack):
    """Stream, archive, schema, ClickHouse role, both delivery paths, functions and monitoring.

    One stack: the Firehose roles, the KMS keys and the bucket reference each other, and keeping
    them together avoids cross-stack exports that block updates. Stateful resources (keys, stream,
    buckets) are RETAINed, so deleting the stack never deletes billing data.
    """

    def __init__(self, scope: Construct, id: str, *, config: PipelineConfig) -> None:
        super().__init__(
            scope, id, description="bxb-stream: billing events from Kinesis to Parquet on S3 and ClickHouse"
        )
        self.config = config
        self._data(config)
        self._pipeline(config)
        # The Firehose L2 adds a CIDR-block mapping for Redshift/Splunk destinations; unused here
        # (cfn-lint W7001), so drop it.
        self.node.try_remove_child("@aws-cdk--aws-kinesisfirehose.CidrBlocks")

    def _data(self, config: PipelineConfig) -> None:
        self.events = EventStream(self, "Events", config=config.stream)
        self.storage = ArchiveStorage(self, "Archive", config=config.s3)
        self.table: EventsTable | None = None
        self.clickhouse: ClickHouseReadRole | None = None
        stream = self.events.stream
        CfnOutput(self, "StreamName", value=stream.stream_name, description="Kinesis stream producers write to")
        CfnOutput(self, "StreamArn", value=stream.stream_arn)
        CfnOutput(
            self,
            "ProducerPolicyArn",
            value=self.events.producer_policy.managed_policy_arn,
            description="Attach to producer roles: PutRecord(s) on the stream + kms:GenerateDataKey",
        )
        CfnOutput(self, "BucketName", value=self.storage.bucket.bucket_name, description="Parquet archive")
        if not config.s3_enabled:
            return
        self.table = EventsTable(self, "Schema", database_name=config.resource_prefix, bucket=self.storage.bucket)
        self.clickhouse = ClickHouseReadRole(self, "ClickHouse", config=config.clickhouse, storage=self.storage)
        role_arn = self.clickhouse.role.role_arn
        domain = self.storage.bucket.bucket_regional_domain_name
        CfnOutput(
            self, "ClickHouseRoleArn", value=role_arn, description="Role ClickHouse assumes to read and archive Parquet"
        )
        for prefix in PARQUET_PREFIXES:
            name = prefix.strip("/").capitalize()
            CfnOutput(
                self,
                f"ClickHouseS3Queue{name}",
                value=s3queue_engine(domain, prefix, role_arn),
                description=(
                    f"ENGINE clause of the S3Queue table for {prefix} (SETTINGS: mode, keeper_path, "
                    f"after_processing='move' to {ARCHIVE_PREFIX}; bxb-stream clickhouse ddl renders them)"
                ),
            )

    def _pipeline(self, config: PipelineConfig) -> None:
        stream, bucket, key = self.events.stream, self.storage.bucket, self.storage.key
        common = {
            "log_retention_days": config.log_retention_days,
            "powertools_layer_version": config.powertools_layer_version,
        }
        self.transform = PythonFunction(
            self,
            "Transform",
            function_dir=TRANSFORM_DIR,
            requirements=TRANSFORM_REQUIREMENTS,
            description="bxb-stream: Firehose transform (validate, normalise, partition)",
            environment=config.transform_env(),
            memory_mib=config.transform_memory_mib,
            timeout_seconds=config.transform_timeout_seconds,
            **common,
        )
        functions: dict[str, lambda_.IFunction] = {"Transform": self.transform.function}
        paths: list[FirehosePath] = []
        self.parquet: ParquetDelivery | None = None
        self.http: HttpDelivery | None = None
        self.ingest: PythonFunction | None = None

        if config.s3_enabled:
            assert self.table is not None
            self.parquet = ParquetDelivery(
                self,
                "Parquet",
                config=config.s3,
                log_retention_days=config.log_retention_days,
                stream=stream,
                transform=self.transform.function,
                bucket=bucket,
                key=key,
                table=firehose.SchemaConfiguration.from_cfn_table(self.table.table),
            )
            paths.append(
                FirehosePath("S3", self.parquet.delivery_stream, "DeliveryToS3", config.alarms.s3_freshness_seconds)
            )
            CfnOutput(self, "ParquetDeliveryStreamName", value=self.parquet.delivery_stream.delivery_stream_name)

        if config.http_enabled:
            access_key = secretsmanager.Secret(
                self,
                "IngestAccessKey",
                description="bxb-stream: access key Firehose sends to the ingest function",
                generate_secret_string=secretsmanager.SecretStringGenerator(
                    secret_string_template="{}",
                    generate_string_key="api_key",  # the shape Firehose's SecretsManagerConfiguration reads
                    exclude_punctuation=True,
                    password_length=64,
                ),
            )
            acknowledge(
                access_key,
                {
                    "AwsSolutions::AwsSolutions-SMG4": (
                        "Firehose reads the key from the secret on each delivery and the ingest function on "
                        "cold start; rotate by updating the secret (both read the same value) rather than a "
                        "rotation Lambda that cannot coordinate the two."
                    )
                },
            )
            clickhouse_secret = secretsmanager.Secret.from_secret_name_v2(
                self, "ClickHouseSecret", config.clickhouse.secret_name
            )
            self.ingest = PythonFunction(
                self,
                "Ingest",
                function_dir=INGEST_DIR,
                requirements=INGEST_REQUIREMENTS,
                description="bxb-stream: Firehose HTTP endpoint, inserts into ClickHouse",
                environment={
                    **config.ingest_env(),
                    "BXB_CLICKHOUSE_SECRET_ARN": clickhouse_secret.secret_arn,
                    "BXB_ACCESS_KEY_SECRET_ARN": access_key.secret_arn,
                },
                memory_mib=config.http.ingest_memory_mib,
                timeout_seconds=config.http.ingest_timeout_seconds,
                **common,
            )
            clickhouse_secret.grant_read(self.ingest.function)
            access_key.grant_read(self.ingest.function)
            # Auth NONE is deliberate: Firehose cannot SigV4-sign HTTP endpoint requests. It sends the
            # X-Amz-Firehose-Access-Key header instead, which the function checks against the secret
            # (constant-time) before reading the body.
            self.url = self.ingest.function.add_function_url(
                auth_type=lambda_.FunctionUrlAuthType.NONE, invoke_mode=lambda_.InvokeMode.BUFFERED
            )
            functions["Ingest"] = self.ingest.function
            self.http = HttpDelivery(
                self,
                "Http",
                config=config.http,
                log_retention_days=config.log_retention_days,
                stream=stream,
                transform=self.transform.function,
                url=self.url.url,
                access_key=access_key,
                bucket=bucket,
                key=key,
            )
            paths.append(
                FirehosePath(
                    "Http", self.http.delivery_stream, "DeliveryToHttpEndpoint", config.alarms.http_freshness_seconds
                )
            )
            CfnOutput(self, "IngestFunctionUrl", value=self.url.url, description="Firehose B's HTTP endpoint")
            CfnOutput(self, "HttpDeliveryStreamName", value=self.http.delivery_stream.delivery_stream_name)
            CfnOutput(self, "IngestAccessKeySecretArn", value=access_key.secret_arn)

        self.monitoring = PipelineMonitoring(
            self,
            "Monitoring",
            config=config.alarms,
            name=config.name,
            stream=stream,
            paths=paths,
            functions=functions,
        )
        CfnOutput(self, "AlarmTopicArn", value=self.monitoring.topic.topic_arn)
        CfnOutput(self, "DashboardName", value=self.monitoring.dashboard.dashboard_name)


def build(app: App, config: PipelineConfig) -> BxbStreamStack:
    """The stack for ``config``; its name is ``config.name``."""
    return BxbStreamStack(app, config.name, config=config)
