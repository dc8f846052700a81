"""cdk-nag acknowledgements, kept next to the construct that needs them, each with its reason."""

from __future__ import annotations

from aws_cdk import Acknowledgment, Stack, Validations
from constructs import IConstruct


def acknowledge(scope: IConstruct, findings: dict[str, str]) -> None:
    """Acknowledge cdk-nag findings on ``scope``, as ``{"Pack::Rule[Finding]": "reason"}``.

    e.g. ``"AwsSolutions::AwsSolutions-IAM5[Resource::*]"``. cdk-nag 3 matches each finding
    id exactly (no prefix matching), so a new wildcard is reported instead of silently covered.
    """
    Validations.of(scope).acknowledge(*(Acknowledgment(id=k, reason=r) for k, r in findings.items()))


def logical_id(construct: IConstruct) -> str:
    """Logical id of an L2's resource, as cdk-nag spells it in findings (``<LogicalId.Arn>``)."""
    return Stack.of(construct).get_logical_id(construct.node.default_child)  # type: ignore[arg-type]
