"""The stack's CloudWatch log groups: named under one prefix, retained as configured, KMS-encrypted."""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import ArnFormat, RemovalPolicy, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from constructs import Construct

RETENTION = {
    1: logs.RetentionDays.ONE_DAY,
    3: logs.RetentionDays.THREE_DAYS,
    5: logs.RetentionDays.FIVE_DAYS,
    7: logs.RetentionDays.ONE_WEEK,
    14: logs.RetentionDays.TWO_WEEKS,
    30: logs.RetentionDays.ONE_MONTH,
    60: logs.RetentionDays.TWO_MONTHS,
    90: logs.RetentionDays.THREE_MONTHS,
    120: logs.RetentionDays.FOUR_MONTHS,
    150: logs.RetentionDays.FIVE_MONTHS,
    180: logs.RetentionDays.SIX_MONTHS,
    365: logs.RetentionDays.ONE_YEAR,
    400: logs.RetentionDays.THIRTEEN_MONTHS,
    545: logs.RetentionDays.EIGHTEEN_MONTHS,
    731: logs.RetentionDays.TWO_YEARS,
    1096: logs.RetentionDays.THREE_YEARS,
    1827: logs.RetentionDays.FIVE_YEARS,
    2192: logs.RetentionDays.SIX_YEARS,
    2557: logs.RetentionDays.SEVEN_YEARS,
    2922: logs.RetentionDays.EIGHT_YEARS,
    3288: logs.RetentionDays.NINE_YEARS,
    3653: logs.RetentionDays.TEN_YEARS,
}

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
