"""Firehose from the stream: what both delivery paths share, and path A (Parquet on S3).

Path B (the ClickHouse HTTP ingest) is ``stacks.http_ingest.HttpIngest``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from aws_cdk import Duration, Size, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kinesis as kinesis
from aws_cdk import aws_kinesisfirehose as firehose
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from constructs import Construct

from bxb_runtime.layout import ERRORS_PREFIX
from bxb_stream.deployment import DATA_PREFIX, ERROR_PREFIX, PARQUET_PREFIXES, S3PathConfig
from stacks.logs import LogGroups
from stacks.nag import acknowledge, logical_id
from stacks.storage import EventsTable

TRANSFORM_RETRIES = 3
# Firehose A writes Parquet under events/<organization>/<date>/<hour>/ and its error output under errors/.
PARQUET_WRITE_PREFIXES: tuple[str, ...] = (*PARQUET_PREFIXES, ERRORS_PREFIX)


def transform_processor(function: lambda_.IFunction, interval_seconds: int, size_mib: int) -> firehose.IDataProcessor:
    return firehose.LambdaFunctionProcessor(
        function,
        buffer_interval=Duration.seconds(interval_seconds),
        buffer_size=Size.mebibytes(size_mib),
        retries=TRANSFORM_RETRIES,
    )


class FirehoseDestinationRole(Construct):
    """The role a delivery stream writes with, its policy written out here rather than granted by the L2.

    The Firehose L2 grants ``Bucket.grantReadWrite`` on the whole bucket (s3:DeleteObject* included)
    and ``:*`` on the processor. Here S3 is scoped to the prefixes this stream writes (so it can neither
    delete nor overwrite anything under archive/), with the actions of the Firehose guide's S3 destination
    policy (controlling-access.html#using-iam-s3) and no delete. The L2 gets ``immutable`` (its grants
    become no-ops), and ``attach`` makes the delivery stream wait for this policy.
    """

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        source_arn: str,
        bucket: s3.IBucket,
        key: kms.IKey,
        write_prefixes: Sequence[str],
        log_group: logs.ILogGroup,
        transform: lambda_.IFunction,
    ) -> None:
        super().__init__(scope, id)
        stack = Stack.of(self)
        self.role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal(
                "firehose.amazonaws.com",
                # Only Firehose acting for this account's delivery stream(s) (confused deputy).
                conditions={
                    "StringEquals": {"aws:SourceAccount": stack.account},
                    "ArnLike": {"aws:SourceArn": source_arn},
                },
            ),
            description="bxb-stream: Firehose delivery (transform invoke, S3 under its own prefixes, logs)",
        )
        self.write_prefixes = tuple(write_prefixes)
        self.policy = iam.Policy(
            self,
            "Policy",
            statements=[
                iam.PolicyStatement(
                    sid="WriteOwnPrefixes",
                    actions=["s3:AbortMultipartUpload", "s3:GetObject", "s3:PutObject"],
                    resources=[bucket.arn_for_objects(f"{prefix}*") for prefix in self.write_prefixes],
                ),
                iam.PolicyStatement(
                    sid="Bucket",
                    actions=["s3:GetBucketLocation", "s3:ListBucket", "s3:ListBucketMultipartUploads"],
                    resources=[bucket.bucket_arn],
                ),
                iam.PolicyStatement(
                    sid="UseKeyViaS3",
                    actions=["kms:Decrypt", "kms:GenerateDataKey"],
                    resources=[key.key_arn],
                    conditions={"StringEquals": {"kms:ViaService": f"s3.{stack.region}.amazonaws.com"}},
                ),
                iam.PolicyStatement(
                    sid="InvokeTransform",
                    actions=["lambda:InvokeFunction", "lambda:GetFunctionConfiguration"],
                    resources=[transform.function_arn],
                ),
                iam.PolicyStatement(
                    sid="Logs",
                    actions=["logs:CreateLogStream", "logs:PutLogEvents"],
                    resources=[log_group.log_group_arn],
                ),
            ],
        )
        self.policy.attach_to_role(self.role)
        # The L2 gets a view of the role that ignores its grants: the policy above is the whole grant.
        self.immutable = self.role.without_policy_updates()
        bucket_id = logical_id(bucket)
        acknowledge(
            self.policy,
            {
                f"AwsSolutions::AwsSolutions-IAM5[Resource::<{bucket_id}.Arn>/{prefix}*]": (
                    f"Firehose writes objects with generated keys (partitions, timestamps, random names) under "
                    f"{prefix}; the prefix is the narrowest scope, and it excludes archive/."
                )
                for prefix in self.write_prefixes
            },
        )

    def add_to_policy(self, statement: iam.PolicyStatement) -> None:
        self.policy.add_statements(statement)

    def attach(self, delivery: firehose.DeliveryStream) -> None:
        """The delivery stream is created only once the role may do its work (CreateDeliveryStream checks)."""
        delivery.node.default_child.node.add_dependency(self.policy)  # type: ignore[union-attr]
        acknowledge(
            delivery,
            {
                "AwsSolutions::AwsSolutions-KDF1": (
                    "Firehose SSE applies only to Direct PUT sources; with a Kinesis source the data is encrypted "
                    "at rest by the stream's CMK and in S3 by SSE-KMS."
                )
            },
        )


def kinesis_delivery_stream(
    scope: Construct,
    stream: kinesis.IStream,
    destination: firehose.IDestination,
    role: FirehoseDestinationRole,
    name: str | None = None,
) -> firehose.DeliveryStream:
    """A delivery stream that reads a Kinesis stream (both paths read the same one)."""
    delivery = firehose.DeliveryStream(
        scope,
        "DeliveryStream",
        source=firehose.KinesisStreamSource(stream),
        destination=destination,
        delivery_stream_name=name,
    )
    role.attach(delivery)
    return delivery


def delivery_stream_arn_pattern(scope: Construct) -> str:
    """Any delivery stream of this account and region (for a role whose stream's name is generated)."""
    return Stack.of(scope).format_arn(service="firehose", resource="deliverystream", resource_name="*")


def default_s3_destination_props(
    config: S3PathConfig,
    *,
    transform: lambda_.IFunction,
    bucket: s3.IBucket,
    key: kms.IKey,
    table: firehose.SchemaConfiguration,
    log_group: logs.ILogGroup,
    role: iam.IRole,
) -> dict[str, Any]:
    """Firehose A's destination (``firehose.S3Bucket(bucket, **props)``): transform, Parquet (Glue schema,
    Snappy), dynamic partitioning, SSE-KMS."""
    return dict(
        processors=[
            transform_processor(transform, config.processor_buffer_interval_seconds, config.processor_buffer_size_mib)
        ],
        data_format_conversion=firehose.DataFormatConversionProps(
            schema_configuration=table,
            input_format=firehose.InputFormat.OPENX_JSON,
            output_format=firehose.ParquetOutputFormat(compression=firehose.ParquetCompression.SNAPPY),
        ),
        # Partition keys come from the transform's metadata.partitionKeys (stream/org/date/hour).
        dynamic_partitioning=firehose.DynamicPartitioningProps(
            enabled=True, retry_duration=Duration.seconds(config.retry_seconds)
        ),
        data_output_prefix=DATA_PREFIX,
        error_output_prefix=ERROR_PREFIX,
        file_extension=".parquet",
        buffering_interval=Duration.seconds(config.buffer_interval_seconds),
        buffering_size=Size.mebibytes(config.buffer_size_mib),
        encryption_key=key,
        logging_config=firehose.EnableLogging(log_group),
        role=role,
    )


class ParquetDelivery(Construct):
    """Firehose A: Kinesis -> transform Lambda -> Parquet (Glue schema, Snappy) -> S3, partitioned."""

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        config: S3PathConfig,
        log_groups: LogGroups,
        stream: kinesis.IStream,
        transform: lambda_.IFunction,
        bucket: s3.IBucket,
        key: kms.IKey,
        table: EventsTable,
    ) -> None:
        super().__init__(scope, id)
        self.log_group = log_groups.create(self, "Logs", "firehose/parquet")
        self.role = FirehoseDestinationRole(
            self,
            "Destination",
            source_arn=delivery_stream_arn_pattern(self),
            bucket=bucket,
            key=key,
            write_prefixes=PARQUET_WRITE_PREFIXES,
            log_group=self.log_group,
            transform=transform,
        )
        # Firehose reads the conversion schema from the Glue table.
        self.role.add_to_policy(
            iam.PolicyStatement(
                sid="ReadSchema",
                actions=["glue:GetTable", "glue:GetTableVersion", "glue:GetTableVersions"],
                resources=[table.catalog_arn, table.database_arn, table.table_arn],
            )
        )
        props = default_s3_destination_props(
            config,
            transform=transform,
            bucket=bucket,
            key=key,
            table=firehose.SchemaConfiguration.from_cfn_table(table.table),
            log_group=self.log_group,
            role=self.role.immutable,
        )
        self.destination = firehose.S3Bucket(bucket, **props)
        self.delivery_stream = kinesis_delivery_stream(self, stream, self.destination, self.role)
