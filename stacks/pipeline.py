"""The bxb-stream stack, composed from the constructs in this package.

Environment-agnostic: no lookups; region and account are CloudFormation pseudo parameters.
"""

from __future__ import annotations

from aws_cdk import App, CfnOutput, Stack
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from bxb_runtime.layout import ARCHIVE_PREFIX
from bxb_stream.deployment import PARQUET_PREFIXES, ClickHouseConfig, PipelineConfig
from stacks.delivery import ParquetDelivery
from stacks.functions import Powertools, PythonFunction, default_transform_function_props
from stacks.http_ingest import HttpIngest
from stacks.logs import LogGroups
from stacks.monitoring import FirehosePath, PipelineMonitoring
from stacks.storage import ArchiveStorage, ClickHouseReadRole, EventsTable
from stacks.streaming import EventStream


def s3queue_engine(bucket_domain: str, prefix: str, role_arn: str, clickhouse: ClickHouseConfig) -> str:
    """The ENGINE clause pointing a ClickHouse S3Queue table at one Parquet prefix of the archive."""
    session = f", role_session_name = '{clickhouse.s3_role_session_name}'" if clickhouse.s3_role_session_name else ""
    return (
        f"S3Queue('https://{bucket_domain}/{prefix}**/*.parquet', 'Parquet', "
        f"extra_credentials(role_arn = '{role_arn}'{session}))"
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
                value=s3queue_engine(domain, prefix, role_arn, config.clickhouse),
                description=(
                    f"ENGINE clause of the S3Queue table for {prefix} (SETTINGS: mode, keeper_path, "
                    f"after_processing='move' to {ARCHIVE_PREFIX}; bxb-stream clickhouse ddl renders them)"
                ),
            )

    def _pipeline(self, config: PipelineConfig) -> None:
        key = self.storage.key
        log_groups = LogGroups(config.name, config.log_retention_days, key if config.encrypt_with_stack_key else None)
        log_groups.allow_cloudwatch_logs(self)
        powertools = Powertools.of(config)
        self.transform = PythonFunction(
            self,
            "Transform",
            props=default_transform_function_props(config),
            log_groups=log_groups,
            log_name="transform",
            powertools=powertools,
        )
        functions: dict[str, lambda_.IFunction] = {"Transform": self.transform.function}
        paths: list[FirehosePath] = []
        alarms = config.alarms
        self.parquet: ParquetDelivery | None = None
        self.http: HttpIngest | None = None
        if config.s3_enabled:
            self.parquet = self._parquet(config, log_groups)
            stream = self.parquet.delivery_stream
            paths.append(
                FirehosePath("S3", stream, "DeliveryToS3", alarms.s3_freshness_seconds, converts_to_parquet=True)
            )
        if config.http_enabled:
            self.http = self._http(config, log_groups, powertools)
            functions["Ingest"] = self.http.ingest.function
            stream = self.http.delivery_stream
            paths.append(
                FirehosePath(
                    "Http",
                    stream,
                    "DeliveryToHttpEndpoint",
                    alarms.http_freshness_seconds,
                    backup_mode=config.http.backup_mode,
                    dead_letters=True,
                )
            )
        self.monitoring = PipelineMonitoring(
            self,
            "Monitoring",
            config=alarms,
            name=config.name,
            stream=self.events.stream,
            paths=paths,
            functions=functions,
        )
        CfnOutput(self, "AlarmTopicArn", value=self.monitoring.topic.topic_arn)
        CfnOutput(self, "DashboardName", value=self.monitoring.dashboard.dashboard_name)

    def _parquet(self, config: PipelineConfig, log_groups: LogGroups) -> ParquetDelivery:
        assert self.table is not None
        parquet = ParquetDelivery(
            self,
            "Parquet",
            config=config.s3,
            log_groups=log_groups,
            stream=self.events.stream,
            transform=self.transform.function,
            bucket=self.storage.bucket,
            key=self.storage.key,
            table=self.table,
        )
        CfnOutput(self, "ParquetDeliveryStreamName", value=parquet.delivery_stream.delivery_stream_name)
        return parquet

    def _http(self, config: PipelineConfig, log_groups: LogGroups, powertools: Powertools) -> HttpIngest:
        http = HttpIngest(
            self,
            "Http",
            config=config,
            log_groups=log_groups,
            powertools=powertools,
            stream=self.events.stream,
            transform=self.transform.function,
            bucket=self.storage.bucket,
            key=self.storage.key,
        )
        CfnOutput(self, "IngestFunctionUrl", value=http.url.url, description="Firehose B's HTTP endpoint")
        CfnOutput(self, "HttpDeliveryStreamName", value=http.delivery_stream.delivery_stream_name)
        CfnOutput(self, "IngestAccessKeySecretArn", value=http.access_key.secret_arn)
        return http


def build(app: App, config: PipelineConfig) -> BxbStreamStack:
    """The stack for ``config``; its name is ``config.name``."""
    return BxbStreamStack(app, config.name, config=config)
