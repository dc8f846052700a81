"""The two Python Lambda functions: Firehose's transform and the HTTP-endpoint ingest."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from aws_cdk import Duration, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from bxb_stream.deployment import PipelineConfig
from stacks.bundling import pinned, python_code
from stacks.logs import LogGroups
from stacks.nag import acknowledge

POWERTOOLS_ACCOUNT = "017000801446"
# boto3 comes from the runtime and Powertools from the layer (or POWERTOOLS_REQUIREMENTS, bundled);
# the rest is bundled, pinned as in requirements.txt.
TRANSFORM_DIR, TRANSFORM_REQUIREMENTS = "lambdas/transform", pinned("msgspec", "pybase64")
INGEST_DIR, INGEST_REQUIREMENTS = "lambdas/ingest", pinned("clickhouse-connect", "msgspec", "pybase64")
POWERTOOLS_REQUIREMENTS = pinned("aws-lambda-powertools")


@dataclass(frozen=True)
class FunctionProps:
    """What differs between the two functions; the rest (runtime, logs, Powertools) is shared."""

    function_dir: str
    requirements: tuple[str, ...]
    description: str
    memory_mib: int
    timeout_seconds: int
    environment: Mapping[str, str] = field(default_factory=dict)
    reserved_concurrency: int = 0  # 0 = none: the account's shared pool


@dataclass(frozen=True)
class Powertools:
    """Where Powertools comes from: the public layer, or bundled with the function's dependencies."""

    source: str  # "layer" or "bundle"
    layer_version: int

    @classmethod
    def of(cls, config: PipelineConfig) -> Powertools:
        return cls(config.powertools, config.powertools_layer_version)

    def requirements(self, requirements: tuple[str, ...]) -> tuple[str, ...]:
        return requirements + POWERTOOLS_REQUIREMENTS if self.source == "bundle" else requirements

    def layers(self, scope: Construct) -> list[lambda_.ILayerVersion]:
        if self.source == "bundle":
            return []
        return [lambda_.LayerVersion.from_layer_version_arn(scope, "Powertools", powertools_layer_arn(scope, self))]


def powertools_layer_arn(scope: Construct, powertools: Powertools) -> str:
    """The public Powertools layer in the stack's region (a token, so no lookup and no env needed)."""
    region = Stack.of(scope).region
    return (
        f"arn:aws:lambda:{region}:{POWERTOOLS_ACCOUNT}:layer:AWSLambdaPowertoolsPythonV3-python312-arm64:"
        f"{powertools.layer_version}"
    )


def default_transform_function_props(config: PipelineConfig) -> FunctionProps:
    return FunctionProps(
        function_dir=TRANSFORM_DIR,
        requirements=TRANSFORM_REQUIREMENTS,
        description="bxb-stream: Firehose transform (validate, normalise, partition)",
        memory_mib=config.transform_memory_mib,
        timeout_seconds=config.transform_timeout_seconds,
        environment=config.transform_env(),
        reserved_concurrency=config.transform_reserved_concurrency,
    )


class PythonFunction(Construct):
    """Python 3.12 / arm64 function with its own role and log group (no AWS managed policy)."""

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        props: FunctionProps,
        log_groups: LogGroups,
        log_name: str,
        powertools: Powertools,
    ) -> None:
        super().__init__(scope, id)
        self.log_group = log_groups.create(self, "Logs", log_name)
        self.role = iam.Role(
            self, "Role", assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"), description=props.description
        )
        # Only its own log group (CreateLogStream/PutLogEvents); EMF metrics travel in the logs.
        self.log_group.grant_write(self.role)
        self.function = lambda_.Function(
            self,
            "Function",
            description=props.description,
            runtime=lambda_.Runtime.PYTHON_3_12,
            architecture=lambda_.Architecture.ARM_64,
            handler=f"{props.function_dir}/handler.handler",
            code=python_code(props.function_dir, powertools.requirements(props.requirements)),
            layers=powertools.layers(self),
            environment=dict(props.environment),
            memory_size=props.memory_mib,
            timeout=Duration.seconds(props.timeout_seconds),
            reserved_concurrent_executions=props.reserved_concurrency or None,
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
