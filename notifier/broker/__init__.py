"""The hand-off between processes: the Celery app, task envelopes, queues and the transport."""
