"""onair: a Kubernetes operator for self-hosted live video streaming."""

__version__ = "0.1.0"
