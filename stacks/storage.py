"""The Parquet archive: bucket, access-log bucket, Glue schema table, and ClickHouse's read role."""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy, Stack
from aws_cdk import aws_glue as glue
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from constructs import Construct

from bxb_runtime.events.schema import glue_columns
from bxb_runtime.layout import ARCHIVE_PREFIX
from bxb_stream.deployment import PARQUET_PREFIXES, ClickHouseConfig, S3PathConfig
from stacks.nag import acknowledge, logical_id

PARQUET_SERDE = "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe"
PARQUET_INPUT = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat"
PARQUET_OUTPUT = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat"

GLACIER_CLASSES = {
    "GLACIER_IR": s3.StorageClass.GLACIER_INSTANT_RETRIEVAL,
    "GLACIER": s3.StorageClass.GLACIER,
    "DEEP_ARCHIVE": s3.StorageClass.DEEP_ARCHIVE,
}


def archive_lifecycle(config: S3PathConfig) -> list[s3.LifecycleRule]:
    """Under archive/ only: Standard -> Infrequent Access -> Glacier (and expiry, if set). Objects still
    waiting under events/, errors/ or http-backup/ stay in Standard, readable at once by S3Queue or
    a redrive. Bucket-wide: old versions and stray multipart uploads expire."""
    return [
        s3.LifecycleRule(
            id="archive",
            prefix=ARCHIVE_PREFIX,
            transitions=[
                s3.Transition(
                    storage_class=s3.StorageClass.INFREQUENT_ACCESS,
                    transition_after=Duration.days(config.infrequent_access_days),
                ),
                s3.Transition(
                    storage_class=GLACIER_CLASSES[config.glacier_storage_class],
                    transition_after=Duration.days(config.glacier_days),
                ),
            ],
            expiration=Duration.days(config.expiration_days) if config.expiration_days else None,
        ),
        s3.LifecycleRule(
            id="versions-and-uploads",
            noncurrent_version_expiration=Duration.days(config.noncurrent_expiration_days),
            abort_incomplete_multipart_upload_after=Duration.days(7),
        ),
    ]


class ArchiveStorage(Construct):
    """SSE-KMS, versioned, TLS-only, private bucket with server access logging."""

    def __init__(self, scope: Construct, id: str, *, config: S3PathConfig) -> None:
        super().__init__(scope, id)
        # Server access logs can only be delivered to an SSE-S3 bucket (not SSE-KMS).
        self.log_bucket = s3.Bucket(
            self,
            "AccessLogs",
            encryption=s3.BucketEncryption.S3_MANAGED,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            versioned=True,
            # Object ownership is left to CDK: with the cdk.json flag it grants log delivery by bucket
            # policy (ACLs stay disabled); without it, by the LogDeliveryWrite ACL.
            lifecycle_rules=[
                s3.LifecycleRule(
                    id="expire-logs",
                    expiration=Duration.days(config.access_log_expiration_days),
                    noncurrent_version_expiration=Duration.days(1),
                )
            ],
            removal_policy=RemovalPolicy.RETAIN,
        )
        self.key = kms.Key(
            self,
            "Key",
            description="bxb-stream: encrypts the Parquet archive, delivery backups, log groups and the access key",
            enable_key_rotation=True,
            removal_policy=RemovalPolicy.RETAIN,
        )
        self.bucket = s3.Bucket(
            self,
            "Bucket",
            encryption=s3.BucketEncryption.KMS,
            encryption_key=self.key,
            bucket_key_enabled=True,  # fewer KMS calls for Firehose's many small objects
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            versioned=True,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            server_access_logs_bucket=self.log_bucket,
            server_access_logs_prefix="archive/",
            lifecycle_rules=archive_lifecycle(config),
            removal_policy=RemovalPolicy.RETAIN,
        )


class EventsTable(Construct):
    """Glue database + table: the schema Firehose converts JSON to Parquet with.

    Columns come from ``bxb_runtime.events.schema.glue_columns()`` only. The table declares no
    partition keys: Firehose's prefixes repeat ``organization_id`` (a data column) and Hive
    forbids a partition named like a column; the table exists for the conversion schema.
    """

    def __init__(self, scope: Construct, id: str, *, database_name: str, bucket: s3.IBucket) -> None:
        super().__init__(scope, id)
        account = Stack.of(self).account
        self.database_name = database_name
        self.table_name = "events"
        self.database = glue.CfnDatabase(
            self,
            "Database",
            catalog_id=account,
            database_input=glue.CfnDatabase.DatabaseInputProperty(
                name=database_name, description="bxb-stream billing events"
            ),
        )
        self.table = glue.CfnTable(
            self,
            "Table",
            catalog_id=account,
            database_name=database_name,
            table_input=glue.CfnTable.TableInputProperty(
                name=self.table_name,
                description="Normalised billing events (Parquet, written by Firehose)",
                table_type="EXTERNAL_TABLE",
                parameters={"classification": "parquet"},
                storage_descriptor=glue.CfnTable.StorageDescriptorProperty(
                    columns=[glue.CfnTable.ColumnProperty(**column) for column in glue_columns()],
                    location=f"s3://{bucket.bucket_name}/{PARQUET_PREFIXES[0]}",
                    input_format=PARQUET_INPUT,
                    output_format=PARQUET_OUTPUT,
                    serde_info=glue.CfnTable.SerdeInfoProperty(serialization_library=PARQUET_SERDE),
                ),
            ),
        )
        self.table.add_resource_dependency(self.database)
        stack = Stack.of(self)
        self.catalog_arn = stack.format_arn(service="glue", resource="catalog")
        self.database_arn = stack.format_arn(service="glue", resource="database", resource_name=database_name)
        self.table_arn = stack.format_arn(
            service="glue", resource="table", resource_name=f"{database_name}/{self.table_name}"
        )


def clickhouse_principal(config: ClickHouseConfig) -> iam.IPrincipal:
    """ClickHouse Cloud's role (or an account); this account when unset, so synth works out of the box.

    Another account must also present the external id or the session name (config requires one).
    """
    if config.s3_principal.startswith("arn:"):
        principal: iam.PrincipalBase = iam.ArnPrincipal(config.s3_principal)
    elif config.s3_principal:
        principal = iam.AccountPrincipal(config.s3_principal)
    else:
        principal = iam.AccountRootPrincipal()
    proof = {
        condition: value
        for condition, value in (
            ("sts:ExternalId", config.s3_external_id),
            ("sts:RoleSessionName", config.s3_role_session_name),
        )
        if value
    }
    return principal.with_conditions({"StringEquals": proof}) if proof else principal


class ClickHouseReadRole(Construct):
    """A role ClickHouse assumes for S3Queue: read the Parquet prefixes, move what it ingested
    below archive/ (copy + delete), and read the archive back for backfills. Nothing else."""

    def __init__(self, scope: Construct, id: str, *, config: ClickHouseConfig, storage: ArchiveStorage) -> None:
        super().__init__(scope, id)
        bucket, region = storage.bucket, Stack.of(self).region
        archived = tuple(ARCHIVE_PREFIX + prefix for prefix in PARQUET_PREFIXES)
        object_arns = [bucket.arn_for_objects(f"{prefix}*") for prefix in PARQUET_PREFIXES]
        archive_arns = [bucket.arn_for_objects(f"{prefix}*") for prefix in archived]
        via_s3 = {"StringEquals": {"kms:ViaService": f"s3.{region}.amazonaws.com"}}
        self.role = iam.Role(
            self,
            "Role",
            assumed_by=clickhouse_principal(config),
            description="ClickHouse S3Queue: reads bxb-stream Parquet (events/) and moves it to archive/",
            max_session_duration=Duration.hours(1),
        )
        self.policy = iam.Policy(
            self,
            "Read",
            statements=[
                iam.PolicyStatement(
                    sid="ReadAndMoveParquet", actions=["s3:GetObject", "s3:DeleteObject"], resources=object_arns
                ),
                iam.PolicyStatement(
                    sid="WriteAndReadArchive", actions=["s3:PutObject", "s3:GetObject"], resources=archive_arns
                ),
                iam.PolicyStatement(
                    sid="ListParquetPrefixes",
                    actions=["s3:ListBucket"],
                    resources=[bucket.bucket_arn],
                    conditions={"StringLike": {"s3:prefix": [f"{p}*" for p in (*PARQUET_PREFIXES, *archived)]}},
                ),
                iam.PolicyStatement(
                    sid="BucketLocation", actions=["s3:GetBucketLocation"], resources=[bucket.bucket_arn]
                ),
                iam.PolicyStatement(
                    sid="UseKeyViaS3",
                    actions=["kms:Decrypt", "kms:GenerateDataKey"],  # the copy re-encrypts under the bucket key
                    resources=[storage.key.key_arn],
                    conditions=via_s3,
                ),
            ],
        )
        self.policy.attach_to_role(self.role)
        acknowledge(
            self.policy,
            {
                f"AwsSolutions::AwsSolutions-IAM5[Resource::<{logical_id(bucket)}.Arn>/{prefix}*]": (
                    f"S3Queue reads (and moves to the archive) every Parquet object Firehose writes under "
                    f"{prefix}, or reads the archive back; object keys are generated (partitions + random "
                    "names), so a prefix is the narrowest possible scope."
                )
                for prefix in (*PARQUET_PREFIXES, *archived)
            },
        )
