"""CDK constructs and stacks for bxb-stream (see app.py and bxb_stream.deployment)."""
