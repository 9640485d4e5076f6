"""Production-grade AWS CloudFormation for a complete MLOps pipeline, as nested stacks."""

__version__ = "0.1.0"

# The checkov release the security checks are written against (scripts/install-checkov pins
# the same; a test keeps them equal).
CHECKOV_VERSION = "3.3.30"
