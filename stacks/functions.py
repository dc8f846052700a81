"""The two Python Lambda functions: Firehose's transform and the HTTP-endpoint ingest."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from aws_cdk import Duration, RemovalPolicy, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from stacks.bundling import pinned, python_code
from stacks.nag import acknowledge

POWERTOOLS_ACCOUNT = "017000801446"
# Powertools and boto3 come from the layer and the runtime; the rest is bundled, pinned as in requirements.txt.
TRANSFORM_DIR, TRANSFORM_REQUIREMENTS = "lambdas/transform", pinned("msgspec", "pybase64")
INGEST_DIR, INGEST_REQUIREMENTS = "lambdas/ingest", pinned("clickhouse-connect", "msgspec", "pybase64", "pyarrow")

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


def log_group(scope: Construct, id: str, retention_days: int) -> logs.LogGroup:
    return logs.LogGroup(scope, id, retention=RETENTION[retention_days], removal_policy=RemovalPolicy.DESTROY)


def powertools_layer_arn(scope: Construct, version: int) -> str:
    """The public Powertools layer in the stack's region (a token, so no lookup and no env needed)."""
    region = Stack.of(scope).region
    return f"arn:aws:lambda:{region}:{POWERTOOLS_ACCOUNT}:layer:AWSLambdaPowertoolsPythonV3-python312-arm64:{version}"


class PythonFunction(Construct):
    """Python 3.12 / arm64 function with its own role and log group (no AWS managed policy)."""

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        function_dir: str,
        requirements: Sequence[str],
        description: str,
        environment: Mapping[str, str],
        memory_mib: int,
        timeout_seconds: int,
        log_retention_days: int,
        powertools_layer_version: int,
    ) -> None:
        super().__init__(scope, id)
        self.log_group = log_group(self, "Logs", log_retention_days)
        self.role = iam.Role(
            self, "Role", assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"), description=description
        )
        # Only its own log group (CreateLogStream/PutLogEvents); EMF metrics travel in the logs.
        self.log_group.grant_write(self.role)
        self.function = lambda_.Function(
            self,
            "Function",
            description=description,
            runtime=lambda_.Runtime.PYTHON_3_12,
            architecture=lambda_.Architecture.ARM_64,
            handler=f"{function_dir}/handler.handler",
            code=python_code(function_dir, requirements),
            layers=[
                lambda_.LayerVersion.from_layer_version_arn(
                    self, "Powertools", powertools_layer_arn(self, powertools_layer_version)
                )
            ],
            environment=dict(environment),
            memory_size=memory_mib,
            timeout=Duration.seconds(timeout_seconds),
            role=self.role,
            log_group=self.log_group,
        )
        # CDK renders DependsOn [policy, role]; the role is already implied by GetAtt (cfn-lint W3005).
        # Keep only the policy dependency: the function must not run before it may write its logs.
        policy = self.role.node.find_child("DefaultPolicy").node.default_child
        self.function.node.default_child.add_override(  # type: ignore[union-attr]
            "DependsOn",
            [Stack.of(self).get_logical_id(policy)],  # type: ignore[arg-type]
        )
        acknowledge(
            self.function,
            {
                "AwsSolutions::AwsSolutions-L1": (
                    "Pinned to Python 3.12: the public Powertools layer and the pip --platform wheels are "
                    "built for python3.12/arm64; upgrade both together."
                )
            },
        )
