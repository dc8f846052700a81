"""The stack's CloudWatch log groups: named under one prefix, retained as configured, KMS-encrypted."""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import ArnFormat, RemovalPolicy, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from constructs import Construct

from bxb_stream.deployment import LOG_RETENTION_DAYS

# CloudWatch's retention periods: the days are bxb_stream.deployment's (what config accepts), in order.
RETENTION = dict(
    zip(
        LOG_RETENTION_DAYS,
        (
            logs.RetentionDays.ONE_DAY,
            logs.RetentionDays.THREE_DAYS,
            logs.RetentionDays.FIVE_DAYS,
            logs.RetentionDays.ONE_WEEK,
            logs.RetentionDays.TWO_WEEKS,
            logs.RetentionDays.ONE_MONTH,
            logs.RetentionDays.TWO_MONTHS,
            logs.RetentionDays.THREE_MONTHS,
            logs.RetentionDays.FOUR_MONTHS,
            logs.RetentionDays.FIVE_MONTHS,
            logs.RetentionDays.SIX_MONTHS,
            logs.RetentionDays.ONE_YEAR,
            logs.RetentionDays.THIRTEEN_MONTHS,
            logs.RetentionDays.EIGHTEEN_MONTHS,
            logs.RetentionDays.TWO_YEARS,
            logs.RetentionDays.THREE_YEARS,
            logs.RetentionDays.FIVE_YEARS,
            logs.RetentionDays.SIX_YEARS,
            logs.RetentionDays.SEVEN_YEARS,
            logs.RetentionDays.EIGHT_YEARS,
            logs.RetentionDays.NINE_YEARS,
            logs.RetentionDays.TEN_YEARS,
        ),
        strict=True,
    )
)

# What CloudWatch Logs needs on a customer-managed key, as the CloudWatch Logs guide lists it
# (encrypt-log-data-kms.html, "Step 2: Set permissions on the KMS key").
LOGS_KEY_ACTIONS = ("kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:Describe*")


@dataclass(frozen=True)
class LogGroups:
    """How every log group of the stack is made: ``/<prefix>/<name>``, one retention, one key (or none)."""

    prefix: str
    retention_days: int
    key: kms.IKey | None = None

    def create(self, scope: Construct, id: str, name: str) -> logs.LogGroup:
        return logs.LogGroup(
            scope,
            id,
            log_group_name=f"/{self.prefix}/{name}",
            retention=RETENTION[self.retention_days],
            encryption_key=self.key,
            removal_policy=RemovalPolicy.DESTROY,
        )

    def allow_cloudwatch_logs(self, scope: Construct) -> None:
        """Let CloudWatch Logs use the key, for this stack's log groups only (by encryption context)."""
        if self.key is None:
            return
        stack = Stack.of(scope)
        groups = stack.format_arn(
            service="logs",
            resource="log-group",
            resource_name=f"/{self.prefix}/*",
            arn_format=ArnFormat.COLON_RESOURCE_NAME,
        )
        self.key.add_to_resource_policy(
            iam.PolicyStatement(
                sid="CloudWatchLogsForThisStacksLogGroups",
                principals=[iam.ServicePrincipal(f"logs.{stack.region}.amazonaws.com")],
                actions=list(LOGS_KEY_ACTIONS),
                resources=["*"],  # in a key policy, "*" is this key
                conditions={"ArnLike": {"kms:EncryptionContext:aws:logs:arn": groups}},
            )
        )
