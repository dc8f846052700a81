"""Alarms (to SNS) and a dashboard for the stream, both Firehose paths and both functions."""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kinesis as kinesis
from aws_cdk import aws_kinesisfirehose as firehose
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subs
from constructs import Construct

from bxb_stream.deployment import AlarmConfig

# The functions' EMF metrics (Powertools Metrics, namespace bxb-stream, dimension service=<function>).
NAMESPACE, TRANSFORM_SERVICE, INGEST_SERVICE = "bxb-stream", "transform", "ingest"

GT = cw.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD
LT = cw.ComparisonOperator.LESS_THAN_THRESHOLD


@dataclass(frozen=True)
class FirehosePath:
    """A delivery path to watch: its stream, its destination's metric prefix, and where on it an event
    can stop short of billing with a CloudWatch metric to show it."""

    label: str
    delivery_stream: firehose.IDeliveryStream
    destination: str  # "DeliveryToS3" or "DeliveryToHttpEndpoint"
    freshness_seconds: int
    # Parquet: records that fail conversion, or exceed the partition limit, go to errors/.
    converts_to_parquet: bool = False
    # HTTP: "failed" = BackupToS3.Records counts exactly the records that gave up on the endpoint;
    # "all" = every record is backed up, so only DeliveryToHttpEndpoint.Success shows failures.
    backup_mode: str | None = None
    # HTTP: the ingest function dead-letters rows that do not fit the schema (RowsDeadLettered).
    dead_letters: bool = False


def emf_metric(service: str, name: str, period: Duration) -> cw.Metric:
    """A count the functions emit as EMF (Powertools Metrics)."""
    return cw.Metric(
        namespace=NAMESPACE, metric_name=name, dimensions_map={"service": service}, statistic="Sum", period=period
    )


class AlarmTopic(Construct):
    """The alarm topic: created (KMS-encrypted, TLS-only) unless an existing ARN is configured."""

    def __init__(self, scope: Construct, id: str, *, config: AlarmConfig) -> None:
        super().__init__(scope, id)
        if config.topic_arn:
            self.topic: sns.ITopic = sns.Topic.from_topic_arn(self, "Topic", config.topic_arn)
        else:
            key = kms.Key(self, "Key", description="bxb-stream: encrypts the alarm topic", enable_key_rotation=True)
            # CloudWatch alarms publish to the encrypted topic, so it needs the key.
            key.grant(iam.ServicePrincipal("cloudwatch.amazonaws.com"), "kms:Decrypt", "kms:GenerateDataKey*")
            self.topic = sns.Topic(self, "Topic", master_key=key, enforce_ssl=True, display_name="bxb-stream alarms")
        if config.email:
            self.topic.add_subscription(subs.EmailSubscription(config.email))


class PipelineMonitoring(Construct):
    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        config: AlarmConfig,
        name: str,
        stream: kinesis.IStream,
        paths: list[FirehosePath],
        functions: dict[str, lambda_.IFunction],
    ) -> None:
        super().__init__(scope, id)
        self.config = config
        self.period = Duration.minutes(config.period_minutes)
        self.topic = AlarmTopic(self, "Alarms", config=config).topic
        self.alarms: list[cw.Alarm] = []

        iterator_age = stream.metric_get_records_iterator_age_milliseconds(statistic="Maximum", period=self.period)
        throttles = stream.metric_put_records_throttled_records(statistic="Sum", period=self.period)
        write_exceeded = stream.metric_write_provisioned_throughput_exceeded(statistic="Sum", period=self.period)
        self.alarm("KinesisIteratorAge", iterator_age, config.iterator_age_ms, GT, "Firehose is falling behind")
        self.alarm("KinesisWriteThrottles", write_exceeded, config.write_throttles, GT, "producers are throttled")

        processing_failed = emf_metric(TRANSFORM_SERVICE, "RecordsProcessingFailed", self.period)
        self.alarm(
            "RecordsProcessingFailed",
            processing_failed,
            config.processing_failed_records,
            GT,
            "the transform rejected records (see errors/ in the archive)",
        )

        widgets: list[list[cw.IWidget]] = [
            [
                graph("Kinesis iterator age (ms)", [iterator_age]),
                graph("Kinesis write throttles", [write_exceeded, throttles]),
                graph("Transform: records failed", [processing_failed]),
            ]
        ]
        for path in paths:
            freshness = path.delivery_stream.metric(
                f"{path.destination}.DataFreshness", statistic="Maximum", period=self.period
            )
            success = path.delivery_stream.metric(
                f"{path.destination}.Success", statistic="Average", period=self.period
            )
            processing = path.delivery_stream.metric(
                "ExecuteProcessing.Success", statistic="Average", period=self.period
            )
            self.alarm(
                f"{path.label}Freshness", freshness, path.freshness_seconds, GT, f"{path.label} delivery is late"
            )
            self.alarm(f"{path.label}DeliverySuccess", success, config.min_success_ratio, LT, f"{path.label} failing")
            self.alarm(
                f"{path.label}ProcessingSuccess", processing, config.min_success_ratio, LT, "transform invocations fail"
            )
            widgets.append(
                [
                    graph(f"{path.label}: data freshness (s)", [freshness]),
                    graph(f"{path.label}: delivery success", [success]),
                    graph(f"{path.label}: transform invocation success", [processing]),
                ]
            )
            widgets.append(self.shortfalls(path))
        for label, function in functions.items():
            errors = function.metric_errors(statistic="Sum", period=self.period)
            throttled = function.metric_throttles(statistic="Sum", period=self.period)
            self.alarm(f"{label}Errors", errors, config.lambda_errors, GT, f"{label} function errors")
            self.alarm(f"{label}Throttles", throttled, config.lambda_throttles, GT, f"{label} function throttled")
            widgets.append(
                [
                    graph(
                        f"{label}: invocations, errors, throttles", [function.metric_invocations(), errors, throttled]
                    ),
                    graph(f"{label}: duration (p99)", [function.metric_duration(statistic="p99")]),
                ]
            )
        self.dashboard = cw.Dashboard(self, "Dashboard", dashboard_name=f"{name}-pipeline")
        self.dashboard.add_widgets(cw.AlarmStatusWidget(title="Alarms", alarms=self.alarms, width=24))
        for row in widgets:
            if row:
                self.dashboard.add_widgets(*row)

    def shortfalls(self, path: FirehosePath) -> list[cw.IWidget]:
        """Alarms (and a dashboard row) for each place on the path an event stops short of billing."""
        stream, config = path.delivery_stream, self.config
        counts: list[cw.IMetric] = []
        widgets: list[cw.IWidget] = []
        if path.converts_to_parquet:
            failed_conversion = stream.metric("FailedConversion.Records", statistic="Sum", period=self.period)
            partitions = stream.metric("PartitionCountExceeded", statistic="Maximum", period=self.period)
            self.alarm(
                f"{path.label}FailedConversion",
                failed_conversion,
                config.failed_conversion_records,
                GT,
                f"{path.label}: records failed Parquet conversion (see errors/format-conversion-failed/)",
            )
            self.alarm(
                f"{path.label}PartitionCountExceeded",
                partitions,
                1,
                GT,
                f"{path.label}: active partition limit exceeded; records go to errors/",
            )
            counts += [failed_conversion, partitions]
        if path.backup_mode is not None:
            backup_success = stream.metric("BackupToS3.Success", statistic="Average", period=self.period)
            self.alarm(
                f"{path.label}BackupSuccess",
                backup_success,
                config.min_success_ratio,
                LT,
                f"{path.label}: writes to the S3 backup fail",
            )
            widgets.append(graph(f"{path.label}: S3 backup success", [backup_success]))
        if path.backup_mode == "failed":
            backed_up = stream.metric("BackupToS3.Records", statistic="Sum", period=self.period)
            self.alarm(
                f"{path.label}BackedUp",
                backed_up,
                config.http_backup_records,
                GT,
                f"{path.label}: records gave up on the endpoint and went to the S3 backup (http-backup/)",
            )
            counts.append(backed_up)
        if path.dead_letters:
            dead = emf_metric(INGEST_SERVICE, "RowsDeadLettered", self.period)
            self.alarm(
                f"{path.label}DeadLetters",
                dead,
                config.dead_letter_rows,
                GT,
                f"{path.label}: the ingest function dead-lettered rows (events_dead_letter)",
            )
            counts.append(dead)
        return [graph(f"{path.label}: stopped short of billing", counts), *widgets] if counts else widgets

    def alarm(
        self, id: str, metric: cw.IMetric, threshold: float, operator: cw.ComparisonOperator, what: str
    ) -> cw.Alarm:
        alarm = cw.Alarm(
            self,
            id,
            metric=metric,
            threshold=threshold,
            comparison_operator=operator,
            evaluation_periods=self.config.evaluation_periods,
            # No data means no traffic (or no failure metric emitted), not an outage.
            treat_missing_data=cw.TreatMissingData.NOT_BREACHING,
            alarm_description=f"bxb-stream: {what}",
        )
        alarm.add_alarm_action(cw_actions.SnsAction(self.topic))
        alarm.add_ok_action(cw_actions.SnsAction(self.topic))
        self.alarms.append(alarm)
        return alarm


def graph(title: str, metrics: list[cw.IMetric]) -> cw.GraphWidget:
    return cw.GraphWidget(title=title, left=metrics, width=8, height=6)
