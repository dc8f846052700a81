"""The Kinesis Data Stream producers write to, its key, and the producers' managed policy."""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kinesis as kinesis
from aws_cdk import aws_kms as kms
from constructs import Construct

from bxb_stream.deployment import StreamConfig
from stacks.nag import acknowledge

PRODUCER_ACTIONS = ("kinesis:PutRecord", "kinesis:PutRecords", "kinesis:DescribeStreamSummary")


def stream_mode(config: StreamConfig) -> kinesis.StreamMode:
    return kinesis.StreamMode.PROVISIONED if config.mode == "provisioned" else kinesis.StreamMode.ON_DEMAND


class EventStream(Construct):
    """KMS-encrypted (customer-managed key, rotated) stream plus a least-privilege producer policy."""

    def __init__(self, scope: Construct, id: str, *, config: StreamConfig) -> None:
        super().__init__(scope, id)
        self.key = kms.Key(
            self,
            "Key",
            description="bxb-stream: encrypts billing events in the Kinesis stream",
            enable_key_rotation=True,
            removal_policy=RemovalPolicy.RETAIN,
        )
        self.stream = kinesis.Stream(
            self,
            "Stream",
            stream_mode=stream_mode(config),
            # CloudFormation rejects ShardCount for on-demand streams.
            shard_count=config.shard_count if config.mode == "provisioned" else None,
            retention_period=Duration.hours(config.retention_hours),
            encryption=kinesis.StreamEncryption.KMS,
            encryption_key=self.key,
            removal_policy=RemovalPolicy.RETAIN,
        )
        acknowledge(
            self.stream,
            {
                "AwsSolutions::AwsSolutions-KDS3": (
                    "A customer-managed key on purpose: rotation under our control and a key policy we can scope "
                    "(producers get kms:GenerateDataKey on this key only)."
                )
            },
        )
        # Producers (the bxb API servers, the CLI) attach this; it names the one stream and key.
        self.producer_policy = iam.ManagedPolicy(
            self,
            "ProducerPolicy",
            description="bxb-stream producers: put billing events on the stream",
            statements=[
                iam.PolicyStatement(actions=list(PRODUCER_ACTIONS), resources=[self.stream.stream_arn]),
                # Kinesis SSE encrypts with the CMK on the producer's behalf.
                iam.PolicyStatement(actions=["kms:GenerateDataKey"], resources=[self.key.key_arn]),
            ],
        )
