"""notifier: signed webhooks in, WeChat template messages out, nothing lost or shown twice."""

__version__ = "0.1.0"
