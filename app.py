#!/usr/bin/env python3
"""CDK app: ``cdk synth`` / ``cdk deploy``. Settings come from cdk.json context (and ``-c`` overrides).

A bad setting fails synth with ``ConfigError`` naming its context key. See bxb_stream.deployment.
"""

from __future__ import annotations

import sys

from aws_cdk import App, Validations
from cdk_nag import AwsSolutionsChecks

from bxb_runtime.config import ConfigError
from bxb_stream.deployment import PipelineConfig
from stacks.pipeline import build


def main() -> None:
    app = App()
    try:
        # All context, from cdk.json and -c alike; from_context reads the bxb: keys and rejects unknown ones.
        config = PipelineConfig.from_context(app.node.get_all_context())
    except ConfigError as exc:
        sys.exit(f"bxb-stream: {exc}")
    build(app, config)
    # cdk-nag (AwsSolutions) runs on every synth; an unacknowledged finding fails it.
    Validations.of(app).add_plugins(AwsSolutionsChecks(app))
    app.synth()


if __name__ == "__main__":
    main()
