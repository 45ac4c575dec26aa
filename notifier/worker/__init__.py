"""The worker processes (Celery workers and beat): tasks that send, retry and reconcile."""
