"""The two Firehose paths from the stream: Parquet on S3 (A) and the ClickHouse HTTP ingest (B)."""

from __future__ import annotations

from aws_cdk import Duration, Size, Stack
from aws_cdk import aws_kinesis as kinesis
from aws_cdk import aws_kinesisfirehose as firehose
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

from bxb_stream.deployment import (
    DATA_PREFIX,
    ERROR_PREFIX,
    HTTP_BACKUP_ERROR_PREFIX,
    HTTP_BACKUP_PREFIX,
    HttpPathConfig,
    S3PathConfig,
)
from stacks.functions import log_group
from stacks.nag import acknowledge

TRANSFORM_RETRIES = 3


def transform_processor(function: lambda_.IFunction, interval_seconds: int, size_mib: int) -> firehose.IDataProcessor:
    return firehose.LambdaFunctionProcessor(
        function,
        buffer_interval=Duration.seconds(interval_seconds),
        buffer_size=Size.mebibytes(size_mib),
        retries=TRANSFORM_RETRIES,
    )


class ParquetDelivery(Construct):
    """Firehose A: Kinesis -> transform Lambda -> Parquet (Glue schema, Snappy) -> S3, partitioned."""

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        config: S3PathConfig,
        log_retention_days: int,
        stream: kinesis.IStream,
        transform: lambda_.IFunction,
        bucket: s3.IBucket,
        key: kms.IKey,
        table: firehose.SchemaConfiguration,
    ) -> None:
        super().__init__(scope, id)
        self.log_group = log_group(self, "Logs", log_retention_days)
        self.destination = firehose.S3Bucket(
            bucket,
            processors=[
                transform_processor(
                    transform, config.processor_buffer_interval_seconds, config.processor_buffer_size_mib
                )
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
            logging_config=firehose.EnableLogging(self.log_group),
        )
        self.delivery_stream = kinesis_delivery_stream(self, stream, self.destination)
        acknowledge_destination_role(self.delivery_stream, "S3 Destination Role", bucket=bucket, transform=transform)
        acknowledge(
            self.delivery_stream.node.find_child("S3 Destination Role").node.find_child("DefaultPolicy"),
            {
                "AwsSolutions::AwsSolutions-IAM5[Resource::*]": (
                    "glue:GetSchemaVersion only, added by the L2 SchemaConfiguration for Glue Schema Registry "
                    "schemas; this stack uses a Glue table (scoped above), so no registry ARN exists to name."
                )
            },
        )


class HttpDelivery(Construct):
    """Firehose B: Kinesis -> transform Lambda -> ingest Lambda's function URL (GZIP, access key)."""

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        config: HttpPathConfig,
        log_retention_days: int,
        stream: kinesis.IStream,
        transform: lambda_.IFunction,
        url: str,
        access_key: secretsmanager.ISecret,
        bucket: s3.IBucket,
        key: kms.IKey,
    ) -> None:
        super().__init__(scope, id)
        self.log_group = log_group(self, "Logs", log_retention_days)
        backup_mode = firehose.HttpBackupMode.ALL if config.backup_mode == "all" else firehose.HttpBackupMode.FAILED
        self.destination = firehose.HttpEndpoint(
            endpoint_config=firehose.HttpEndpointConfig(url=url, name="bxb-ingest", secret=access_key),
            processors=[
                transform_processor(
                    transform, config.processor_buffer_interval_seconds, config.processor_buffer_size_mib
                )
            ],
            buffering_hints=firehose.HttpBufferingHints(
                interval=Duration.seconds(config.buffer_interval_seconds), size=Size.mebibytes(config.buffer_size_mib)
            ),
            request_compression=firehose.HttpCompression.GZIP,
            retry_options=firehose.HttpRetryOptions(duration=Duration.seconds(config.retry_seconds)),
            backup_mode=backup_mode,
            s3_backup=firehose.DestinationS3BackupProps(
                bucket=bucket,
                data_output_prefix=HTTP_BACKUP_PREFIX,
                error_output_prefix=HTTP_BACKUP_ERROR_PREFIX,
                compression=firehose.Compression.GZIP,
                encryption_key=key,
                logging_config=firehose.EnableLogging(self.log_group),
            ),
            logging_config=firehose.EnableLogging(self.log_group),
        )
        self.delivery_stream = kinesis_delivery_stream(self, stream, self.destination)
        acknowledge_destination_role(self.delivery_stream, "Http Destination Role", bucket=bucket, transform=transform)


def kinesis_delivery_stream(
    scope: Construct, stream: kinesis.IStream, destination: firehose.IDestination
) -> firehose.DeliveryStream:
    """A delivery stream that reads a Kinesis stream (both paths read the same one)."""
    return firehose.DeliveryStream(
        scope, "DeliveryStream", source=firehose.KinesisStreamSource(stream), destination=destination
    )


def acknowledge_destination_role(
    delivery: firehose.DeliveryStream, role_id: str, *, bucket: s3.IBucket, transform: lambda_.IFunction
) -> None:
    """The L2's destination-role grants (bucket read/write, key use, processor invoke), each explained."""
    stack = Stack.of(delivery)
    bucket_arn = f"<{stack.get_logical_id(bucket.node.default_child)}.Arn>"  # type: ignore[arg-type]
    function_arn = f"<{stack.get_logical_id(transform.node.default_child)}.Arn>"  # type: ignore[arg-type]
    bucket_grant = (
        "Firehose L2 S3 destination grant (Bucket.grantReadWrite), scoped to the archive bucket: multipart "
        "uploads (Abort*, List*), bucket location (GetBucket*) and its own objects; the L2 has no narrower grant."
    )
    findings = {
        f"AwsSolutions::AwsSolutions-IAM5[Action::{action}]": bucket_grant
        for action in ("s3:Abort*", "s3:DeleteObject*", "s3:GetBucket*", "s3:GetObject*", "s3:List*")
    }
    findings[f"AwsSolutions::AwsSolutions-IAM5[Resource::{bucket_arn}/*]"] = (
        "Firehose writes generated object keys anywhere under its prefixes in the archive bucket."
    )
    for action in ("kms:GenerateDataKey*", "kms:ReEncrypt*"):
        findings[f"AwsSolutions::AwsSolutions-IAM5[Action::{action}]"] = (
            "Key.grantEncryptDecrypt on the archive's own CMK only (SSE-KMS writes); resource is the key ARN."
        )
    findings[f"AwsSolutions::AwsSolutions-IAM5[Resource::{function_arn}:*]"] = (
        "lambda:InvokeFunction on the transform function's versions/aliases (ARN:*), granted by the L2 processor."
    )
    acknowledge(delivery.node.find_child(role_id).node.find_child("DefaultPolicy"), findings)
    acknowledge(
        delivery,
        {
            "AwsSolutions::AwsSolutions-KDF1": (
                "Firehose SSE applies only to Direct PUT sources; with a Kinesis source the data is encrypted at "
                "rest by the stream's CMK and in S3 by SSE-KMS."
            )
        },
    )
