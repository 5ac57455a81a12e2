"""ghdeploy: build, push and deploy GhostHands to EC2 hosts over SSH."""

__version__ = "0.1.0"
