"""Path B: Firehose -> the ingest Lambda's function URL -> ClickHouse, as one construct.

The access-key secret, the ingest function and its URL, and the delivery stream that posts to it.
Each part's settings come from a pure ``default_*_props(config, ...)`` function (the AWS Solutions
Constructs pattern), so they can be read and tested without building anything.
"""

from __future__ import annotations

from typing import Any

from aws_cdk import Duration, Size, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kinesis as kinesis
from aws_cdk import aws_kinesisfirehose as firehose
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

from bxb_runtime.ingest.service import IngestSettings
from bxb_runtime.layout import HTTP_BACKUP_PREFIX as HTTP_BACKUP_ROOT
from bxb_stream.deployment import HTTP_BACKUP_ERROR_PREFIX, HTTP_BACKUP_PREFIX, PipelineConfig
from stacks.delivery import FirehoseDestinationRole, kinesis_delivery_stream, transform_processor
from stacks.functions import INGEST_DIR, INGEST_REQUIREMENTS, FunctionProps, Powertools, PythonFunction
from stacks.logs import LogGroups
from stacks.nag import acknowledge

# The HTTP backup writes under http-backup/ and its error output under http-backup-errors/.
HTTP_WRITE_PREFIXES: tuple[str, ...] = (HTTP_BACKUP_ROOT, HTTP_BACKUP_ERROR_PREFIX.split("!", 1)[0])
# The ingest function compares X-Amz-Firehose-Source-Arn with this variable.
SOURCE_ARN_ENV = IngestSettings.env_name("source_arn")


def default_access_key_props(config: PipelineConfig, key: kms.IKey) -> dict[str, Any]:
    """The key Firehose sends as X-Amz-Firehose-Access-Key, in the secret shape Firehose reads."""
    return dict(
        description="bxb-stream: access key Firehose sends to the ingest function",
        generate_secret_string=secretsmanager.SecretStringGenerator(
            secret_string_template="{}",
            generate_string_key="api_key",  # the shape Firehose's SecretsManagerConfiguration reads
            exclude_punctuation=True,
            password_length=64,
        ),
        encryption_key=key if config.encrypt_with_stack_key else None,
    )


def default_ingest_function_props(config: PipelineConfig, source_arn: str) -> FunctionProps:
    """The ingest function; the secrets' ARNs are added by the construct."""
    return FunctionProps(
        function_dir=INGEST_DIR,
        requirements=INGEST_REQUIREMENTS,
        description="bxb-stream: Firehose HTTP endpoint, inserts into ClickHouse",
        memory_mib=config.http.ingest_memory_mib,
        timeout_seconds=config.http.ingest_timeout_seconds,
        environment={**config.ingest_env(), SOURCE_ARN_ENV: source_arn},
        reserved_concurrency=config.http.ingest_max_concurrency,
    )


def default_function_url_props() -> dict[str, Any]:
    # Auth NONE is deliberate: Firehose cannot SigV4-sign HTTP endpoint requests. It sends the
    # X-Amz-Firehose-Access-Key header instead, which the function checks against the secret
    # (constant-time) before reading the body.
    return dict(auth_type=lambda_.FunctionUrlAuthType.NONE, invoke_mode=lambda_.InvokeMode.BUFFERED)


def default_http_endpoint_props(
    config: PipelineConfig,
    *,
    url: str,
    access_key: secretsmanager.ISecret,
    transform: lambda_.IFunction,
    bucket: s3.IBucket,
    key: kms.IKey,
    log_group: logs.ILogGroup,
    role: iam.IRole,
) -> dict[str, Any]:
    """Firehose B's destination (``firehose.HttpEndpoint(**props)``): GZIP, retries, S3 backup."""
    http = config.http
    return dict(
        endpoint_config=firehose.HttpEndpointConfig(url=url, name="bxb-ingest", secret=access_key),
        processors=[
            transform_processor(transform, http.processor_buffer_interval_seconds, http.processor_buffer_size_mib)
        ],
        buffering_hints=firehose.HttpBufferingHints(
            interval=Duration.seconds(http.buffer_interval_seconds), size=Size.mebibytes(http.buffer_size_mib)
        ),
        request_compression=firehose.HttpCompression.GZIP,
        retry_options=firehose.HttpRetryOptions(duration=Duration.seconds(http.retry_seconds)),
        backup_mode=firehose.HttpBackupMode.ALL if http.backup_mode == "all" else firehose.HttpBackupMode.FAILED,
        s3_backup=firehose.DestinationS3BackupProps(
            bucket=bucket,
            data_output_prefix=HTTP_BACKUP_PREFIX,
            error_output_prefix=HTTP_BACKUP_ERROR_PREFIX,
            compression=firehose.Compression.GZIP,
            encryption_key=key,
            logging_config=firehose.EnableLogging(log_group),
        ),
        logging_config=firehose.EnableLogging(log_group),
        role=role,
    )


class HttpIngest(Construct):
    """Firehose B: Kinesis -> transform Lambda -> ingest Lambda's function URL (GZIP, access key) -> ClickHouse."""

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        config: PipelineConfig,
        log_groups: LogGroups,
        powertools: Powertools,
        stream: kinesis.IStream,
        transform: lambda_.IFunction,
        bucket: s3.IBucket,
        key: kms.IKey,
    ) -> None:
        super().__init__(scope, id)
        stack = Stack.of(self)
        # The stream's name is fixed, so its ARN is known before it exists: the function can be told it
        # without a cycle (stream -> URL -> function environment -> stream).
        self.delivery_stream_name = config.http_delivery_stream_name
        self.delivery_stream_arn = stack.format_arn(
            service="firehose", resource="deliverystream", resource_name=self.delivery_stream_name
        )
        self.access_key = secretsmanager.Secret(self, "AccessKey", **default_access_key_props(config, key))
        acknowledge(
            self.access_key,
            {
                "AwsSolutions::AwsSolutions-SMG4": (
                    "Firehose reads the key from the secret on each delivery and the ingest function on "
                    "cold start; rotate by updating the secret (both read the same value) rather than a "
                    "rotation Lambda that cannot coordinate the two."
                )
            },
        )
        self.clickhouse_secret = secretsmanager.Secret.from_secret_name_v2(
            self, "ClickHouseSecret", config.clickhouse.secret_name
        )
        self.ingest = PythonFunction(
            self,
            "Ingest",
            props=default_ingest_function_props(config, self.delivery_stream_arn),
            log_groups=log_groups,
            log_name="ingest",
            powertools=powertools,
        )
        env = IngestSettings.env_name
        self.ingest.function.add_environment(env("clickhouse_secret_arn"), self.clickhouse_secret.secret_arn)
        self.ingest.function.add_environment(env("access_key_secret_arn"), self.access_key.secret_arn)
        self.clickhouse_secret.grant_read(self.ingest.function)
        self.access_key.grant_read(self.ingest.function)
        self.url = self.ingest.function.add_function_url(**default_function_url_props())

        self.log_group = log_groups.create(self, "Logs", "firehose/http")
        self.role = FirehoseDestinationRole(
            self,
            "Destination",
            source_arn=self.delivery_stream_arn,
            bucket=bucket,
            key=key,
            write_prefixes=HTTP_WRITE_PREFIXES,
            log_group=self.log_group,
            transform=transform,
        )
        # Firehose reads the key on each delivery (the L2's grant goes to the immutable view).
        self.role.add_to_policy(
            iam.PolicyStatement(
                sid="ReadAccessKey", actions=["secretsmanager:GetSecretValue"], resources=[self.access_key.secret_arn]
            )
        )
        if config.encrypt_with_stack_key:
            self.role.add_to_policy(
                iam.PolicyStatement(
                    sid="DecryptAccessKeyViaSecretsManager",
                    actions=["kms:Decrypt"],
                    resources=[key.key_arn],
                    conditions={"StringEquals": {"kms:ViaService": f"secretsmanager.{stack.region}.amazonaws.com"}},
                )
            )
        self.destination = firehose.HttpEndpoint(
            **default_http_endpoint_props(
                config,
                url=self.url.url,
                access_key=self.access_key,
                transform=transform,
                bucket=bucket,
                key=key,
                log_group=self.log_group,
                role=self.role.immutable,
            )
        )
        self.delivery_stream = kinesis_delivery_stream(
            self, stream, self.destination, self.role, name=self.delivery_stream_name
        )
