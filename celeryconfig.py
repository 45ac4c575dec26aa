"""Celery's settings, all in one place; the values come from notifier.config."""

from kombu.entity import Queue

from notifier.broker.plugin import broker_url as _broker_url
from notifier.broker.plugin import install as _install_transport
from notifier.broker.queues import (
    CAMPAIGNS_QUEUE,
    CHUNK_TASK,
    CONTROL_QUEUE,
    CONTROL_TASKS,
    MESSAGES_QUEUE,
    SEND_TASK,
)
from notifier.config import current

_settings = current()

broker_url = _broker_url(_settings.redis_url)
# BROKER_TRANSPORT=fast (the default): kombu's Redis transport with fewer round trips per
# message and a wait that takes nothing off the queue (notifier/broker/transport.py), registered
# under kombu's own `redis` and `rediss`, so the URL keeps its scheme (Flower reads queue
# lengths from it). `kombu`: kombu's stock Redis transport. Both read and write the same
# keys, so either can take over the other's queues.
_install_transport(_settings.broker_transport)
broker_connection_retry_on_startup = True
# Fail a publish fast when Redis is away, so the intake answers 503, not a hang.
broker_connection_timeout = 2
broker_connection_max_retries = None
broker_pool_limit = 64
broker_transport_options = {
    # The crash-recovery clock: an unacknowledged message returns to the queue after
    # this long. It stays below WeChat's 10-minute client_msg_id window, so a resend
    # after a crash is de-duplicated, and above twice the retry backoff cap, so a
    # retry waiting for its countdown is never redelivered.
    "visibility_timeout": _settings.visibility_timeout,
    # Look for such messages every 10 s. kombu's default scans only every tenth look
    # (every 100 s), which would stretch a crash's redelivery past WeChat's window.
    "unacked_restore_interval": 10,
    "unacked_restore_throttle": 1,
    # One list per queue (no priority sub-queues: nothing here sends priorities), so an
    # idle worker of the fast transport waits for that queue's wake-up tokens and takes
    # nothing off the queue until it can record it (notifier/broker/transport.py). The same on
    # both transports, so each reads the lists the other writes; Flower counts these too.
    "priority_steps": [0],
    "socket_connect_timeout": 2,
    "socket_timeout": 5,
    "socket_keepalive": True,
    "retry_on_timeout": True,
    "health_check_interval": 10,
    "max_connections": 256,
}
redis_socket_connect_timeout = 2
redis_socket_timeout = 5

task_serializer = "json"
result_serializer = "json"
accept_content = ["json"]
task_ignore_result = True
result_backend = None

task_acks_late = True
task_reject_on_worker_lost = True
# A failed task is acknowledged (the default): its outcome is recorded in its status.
task_default_queue = MESSAGES_QUEUE
# Every queue, declared on the default exchange as intake's envelopes address them, so
# Flower's Broker page lists all three before it has heard from each kind of worker.
task_queues = [
    Queue(name, routing_key=name)  # type: ignore[no-untyped-call]  # kombu is untyped
    for name in (MESSAGES_QUEUE, CAMPAIGNS_QUEUE, CONTROL_QUEUE)
]
# Single messages and campaigns never share a queue, so a campaign cannot delay the
# one-off message someone waits for; each queue has its own workers.
# Beat's tasks have a queue of their own, which the campaign workers also consume: behind
# a backlog of messages the reconciler's passes would wait, or expire unrun.
task_routes = {
    SEND_TASK: {"queue": MESSAGES_QUEUE},
    CHUNK_TASK: {"queue": CAMPAIGNS_QUEUE},
    **{task: {"queue": CONTROL_QUEUE} for task in CONTROL_TASKS},
}
task_publish_retry = True
task_publish_retry_policy = {
    "max_retries": 2,
    "interval_start": 0,
    "interval_step": 0.25,
    "interval_max": 0.5,
}

worker_prefetch_multiplier = 4
# Task events cost a Redis publish each (three per task); Flower switches them on in
# the workers while it runs (its enable_events option), so they cost nothing otherwise.
worker_send_task_events = False
task_send_sent_event = False
worker_cancel_long_running_tasks_on_connection_loss = False

# The tasks, and the mover of scheduled work, which every worker process runs.
imports = ("notifier.worker.tasks", "notifier.worker.mover")

beat_schedule = {
    "refresh-access-token": {
        "task": "notifier.refresh_token",
        # Every 100 minutes: well inside the token's 120-minute life.
        "schedule": 6000.0,
    },
    "reconcile": {
        "task": "notifier.reconcile",
        # Lost work is found within this long of its visibility timeout and margin.
        "schedule": 10.0,
        # A pass still waiting when the next is due is dropped: one is enough.
        "options": {"expires": 10},
    },
    "resume-deferred": {
        "task": "notifier.resume_deferred",
        # Deferred messages go out within a minute of the daily quota's reset.
        "schedule": 60.0,
    },
}

timezone = "UTC"
enable_utc = True
