"""WeChat itself: its HTTP API and its signed callbacks, free of Flask, Celery and Redis."""
