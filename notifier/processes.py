"""The processes' defaults in one place.

The Procfile, docker-compose.yml and the Dockerfile spell them as shell text, for the
process runners; the dev stack and `notifier bench` build their commands from here, and
tests/test_defaults.py holds all of them to these values, as the processes would see them.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from notifier.broker.queues import CAMPAIGNS_QUEUE, CONTROL_QUEUE, MESSAGES_QUEUE
from notifier.parsing import env_int

# gunicorn: WEB_CONCURRENCY processes of gevent workers, each holding up to WEB_CONNECTIONS
# connections. Greenlets, not threads: a client that sends its body slowly holds a greenlet
# until BODY_TIMEOUT_SECONDS, and hundreds of those leave every other request a worker
# (docs/decisions/0009-the-web-serves-on-greenlets.md).
WEB_WORKERS = 2
WEB_WORKER_CLASS = "gevent"
WEB_CONNECTIONS = 1000
WEB_PORT = 8000
FLOWER_PORT = 5555

# The variables Procfile runners set to name each instance of a process type, innermost
# runner first: honcho (2.x and 1.x) sets HONCHO_PROCESS_NAME=worker.2, foreman sets
# PS=worker.2, Heroku sets DYNO=worker.2 (honcho run inside a dyno sees both, so honcho's
# goes first). Node names built from them stay distinct when a worker line is scaled.
INSTANCE_VARIABLES = ("HONCHO_PROCESS_NAME", "PS", "DYNO")


@dataclass(frozen=True)
class WorkerKind:
    """One worker line of the Procfile: its queue, its pool and how many tasks it runs."""

    process: str  # the Procfile's name for the line
    queue: str
    pool: str
    concurrency: int  # threads or greenlets per process
    concurrency_variable: str  # overrides `concurrency`, as `${NAME:-default}` does in sh
    prefetch: int | None = None  # --prefetch-multiplier; None leaves Celery's default (4)
    also: tuple[str, ...] = ()  # more queues this line consumes

    @property
    def queues(self) -> str:
        """The --queues value: the line's own queue first."""
        return ",".join((self.queue, *self.also))

    def pool_flags(self) -> list[str]:
        """The pool flags, concurrency aside."""
        flags = ["--pool", self.pool]
        if self.prefetch is not None:
            flags += ["--prefetch-multiplier", str(self.prefetch)]
        return flags

    def concurrency_in(self, env: Mapping[str, str]) -> int:
        """Threads or greenlets per process, as the Procfile's line reads the environment."""
        return env_int(env, self.concurrency_variable, self.concurrency)

    def args(self, concurrency: int) -> list[str]:
        """Pool, concurrency and queue, as the Procfile's line passes them."""
        return [*self.pool_flags(), "--concurrency", str(concurrency), "--queues", self.queues]


# Threads for single messages: each is its own task, and one process per core with 64
# threads sent 2.3 times what 16 did (1,177 against 509 messages/s on 2 cores, 50 ms
# WeChat latency). gevent for campaigns, whose tasks send a chunk one recipient after
# another, so greenlets keep many sends in flight cheaply; prefetch 1 keeps a process
# from holding chunks it is not sending. Campaign workers also run beat's tasks (the
# reconciler, the token refresh): behind a backlog of single messages those would wait,
# and a second queue would cost the single-message workers their one-queue wait.
MESSAGE_WORKER = WorkerKind("worker", MESSAGES_QUEUE, "threads", 64, "WORKER_CONCURRENCY")
CAMPAIGN_WORKER = WorkerKind(
    "campaigns",
    CAMPAIGNS_QUEUE,
    "gevent",
    100,
    "CAMPAIGN_CONCURRENCY",
    prefetch=1,
    also=(CONTROL_QUEUE,),
)
WORKERS = {kind.queue: kind for kind in (MESSAGE_WORKER, CAMPAIGN_WORKER)}


def worker_pool(queue: str) -> list[str]:
    """The pool flags the Procfile gives a queue's workers (concurrency aside)."""
    return WORKERS[queue].pool_flags()


def instance_node_name(process: str) -> str:
    """The Procfile's Celery node name for a worker line, as sh text.

    Under honcho, foreman or Heroku it is the instance's name (worker.2@host); elsewhere
    worker.1 on the machine's or container's hostname (%h), which differs per container.
    """
    expression = f"{process}.1"
    for variable in reversed(INSTANCE_VARIABLES):
        expression = f"${{{variable}:-{expression}}}"
    return f"{expression}@%h"


def cpu_cores() -> int:
    """The cores this process may run on: the README's one worker process per core and line."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except AttributeError:  # not Linux
        return os.cpu_count() or 1
