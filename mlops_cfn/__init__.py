"""Production-grade AWS CloudFormation for a complete MLOps pipeline, as nested stacks."""

__version__ = "0.1.0"
