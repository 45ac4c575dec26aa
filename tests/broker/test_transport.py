"""The broker transport: one client per pool, runs of messages pulled and recorded atomically."""

from __future__ import annotations

import contextlib
import json
import re
import select
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from queue import Empty
from typing import Any

import kombu
import pytest
import redis
from kombu import transport as kombu_transport
from kombu.connection import Connection
from kombu.entity import Queue
from kombu.messaging import Consumer
from kombu.transport import redis as kombu_redis
from kombu.transport import virtual
from kombu.transport.virtual import Message

from notifier.broker import plugin as transport_plugin
from notifier.broker.lua import PULL
from notifier.broker.transport import Transport
from notifier.broker.wake import WAKE_TOKENS_MAX, WAKE_TOKENS_TTL, wake_key
from notifier.config import EXIT_CONFIG
from notifier.devtools.redis_server import RedisServer, find_binary


def test_one_client_per_pool_and_a_new_one_after_a_reconnect(redis_server: RedisServer) -> None:
    with Connection(redis_server.url, transport=Transport) as connection:
        channel = connection.default_channel
        first = channel._create_client()
        assert channel._create_client() is first
        channel._pool = None  # what kombu does when it drops its connections
        again = channel._create_client()
        assert again is not first and again.connection_pool is channel.pool


def test_messages_are_delivered_and_acknowledged(redis_server: RedisServer) -> None:
    with Connection(redis_server.url, transport=Transport) as connection:
        queue = connection.SimpleQueue("notifier.test-transport")
        for n in range(3):
            queue.put({"n": n})
        seen = []
        for _ in range(3):
            message = queue.get(timeout=5)
            seen.append(message.payload["n"])
            message.ack()
        channel = queue.channel
        client = channel._create_client()
        assert sorted(seen) == [0, 1, 2]
        assert client.hlen(channel.unacked_key) == 0  # every ack reached Redis
        queue.close()


def _publish(connection: Connection, queue: Queue, count: int) -> None:
    """Publish {"n": 0} .. {"n": count - 1} to the queue, in order."""
    producer = connection.Producer()
    for n in range(count):
        producer.publish({"n": n}, routing_key=queue.routing_key, declare=[queue])


def _consume(
    connection: Connection,
    queue: Queue,
    ack: bool,
    want: int,
    seconds: float = 10,
    no_ack: bool = False,
) -> list[Message]:
    """Messages delivered to a consumer through the poller (the path a worker's loop uses).

    `no_ack` makes a consumer that never acknowledges, as Celery's reply consumers are.
    """
    got: list[Message] = []

    def receive(body: Any, message: Message) -> None:
        got.append(message)
        if ack:
            message.ack()

    with Consumer(connection, [queue], callbacks=[receive], prefetch_count=want, no_ack=no_ack):
        deadline = time.monotonic() + seconds
        while len(got) < want and time.monotonic() < deadline:
            with contextlib.suppress(socket.timeout):
                connection.drain_events(timeout=1)
    return got


# As celeryconfig sets it: one list per queue, so an idle worker waits for its wake-up tokens.
ONE_LIST = {"priority_steps": [0]}


def _connect(url: str) -> Connection:
    """A connection on this transport, configured as celeryconfig configures it."""
    return Connection(url, transport=Transport, transport_options=ONE_LIST)


def _calls(client: redis.Redis) -> dict[str, int]:
    return {k.removeprefix("cmdstat_"): v["calls"] for k, v in client.info("commandstats").items()}


@pytest.mark.parametrize(("options", "wait"), [(ONE_LIST, "blpop"), ({}, "brpop")])
def test_a_backlog_is_pulled_in_runs_recorded_as_kombu_records_them(
    redis_server: RedisServer, redis_client: redis.Redis, options: dict[str, Any], wait: str
) -> None:
    queue = Queue("notifier.test-pull", routing_key="notifier.test-pull")
    with Connection(redis_server.url, transport=Transport, transport_options=options) as connection:
        _publish(connection, queue, 40)
        redis_client.config_resetstat()
        got = _consume(connection, queue, ack=False, want=40)
        calls = _calls(redis_client)
        assert [m.payload["n"] for m in got] == list(range(40))  # in order, each once
        # The first read waited (for a token on one list, kombu's BRPOP on several); then the
        # backlog came in two runs (at most 32 a run), the second by the script's digest.
        # Only BRPOP takes a message itself.
        assert calls[wait] == 1 and calls["eval"] == 1 and calls["evalsha"] == 1
        # Each is recorded exactly as kombu's own bookkeeping would: message, exchange, key.
        for message in got:
            raw = redis_client.hget("unacked", message.delivery_tag)
            info = message.delivery_info
            assert json.loads(raw) == [message._raw, info["exchange"], info["routing_key"]]
        assert redis_client.zcard("unacked_index") == 40
        assert redis_client.llen("notifier.test-pull") == 0


@contextlib.contextmanager
def _waiting(url: str, queue: Queue, count: int) -> Iterator[list[Any]]:
    """`count` idle workers of one queue, each with its wait sent to Redis."""
    with contextlib.ExitStack() as stack:
        channels = []
        for _ in range(count):
            connection = stack.enter_context(_connect(url))
            stack.enter_context(Consumer(connection, [queue], callbacks=[lambda b, m: None]))
            channel = connection.default_channel
            connection.transport.cycle._register_BRPOP(channel)
            channels.append(channel)
        yield channels


def test_a_message_wakes_one_idle_worker_not_all(
    redis_server: RedisServer, redis_client: redis.Redis
) -> None:
    queue = Queue("notifier.test-herd", routing_key="notifier.test-herd")
    with _waiting(redis_server.url, queue, 4) as channels:
        with Connection(redis_server.url, transport=Transport) as publisher:
            _publish(publisher, queue, 1)
        time.sleep(0.3)  # well within the wait's 1 s timeout: only a woken worker has a reply
        sockets = [channel.client.connection._sock for channel in channels]
        woken, _, _ = select.select(sockets, [], [], 0)
        assert len(woken) == 1
        assert redis_client.llen("notifier.test-herd") == 1  # woken, not taken
        assert redis_client.llen(wake_key("notifier.test-herd")) == 0


def test_wake_up_tokens_are_bounded_and_cleared_once_the_queue_is_empty(
    redis_server: RedisServer, redis_client: redis.Redis
) -> None:
    queue = Queue("notifier.test-tokens", routing_key="notifier.test-tokens")
    with _connect(redis_server.url) as connection:
        _publish(connection, queue, WAKE_TOKENS_MAX + 20)
        assert redis_client.llen(wake_key("notifier.test-tokens")) == WAKE_TOKENS_MAX
        got = _consume(connection, queue, ack=True, want=WAKE_TOKENS_MAX + 20)
    assert len(got) == WAKE_TOKENS_MAX + 20
    assert redis_client.exists("notifier.test-tokens", wake_key("notifier.test-tokens")) == 0


def test_a_publish_that_fails_queues_nothing_so_its_retry_queues_one(
    redis_server: RedisServer, redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The message, its token and the token list's expiry go in one transaction."""
    queue = Queue("notifier.test-publish", routing_key="notifier.test-publish")
    execute = redis.client.Pipeline.execute
    failures: list[str] = []

    def fail_once(pipe: redis.client.Pipeline, *args: Any, **kwargs: Any) -> Any:
        if not failures and any(str(c[0][1]) == wake_key(queue.name) for c in pipe.command_stack):
            failures.append("lost")
            pipe.reset()
            raise redis.ConnectionError("Redis went away")
        return execute(pipe, *args, **kwargs)

    monkeypatch.setattr(redis.client.Pipeline, "execute", fail_once)
    with _connect(redis_server.url) as connection:
        connection.Producer().publish({"n": 0}, routing_key=queue.routing_key, declare=[queue],
                                      retry=True, retry_policy={"interval_start": 0})  # fmt: skip
    assert failures == ["lost"]
    assert redis_client.llen("notifier.test-publish") == 1
    assert redis_client.llen(wake_key("notifier.test-publish")) == 1
    assert 0 < redis_client.ttl(wake_key("notifier.test-publish")) <= WAKE_TOKENS_TTL


def test_a_consumer_that_does_not_ack_leaves_no_unacked_record(
    redis_server: RedisServer, redis_client: redis.Redis
) -> None:
    """As Celery's consumer of replies to inspect and control: the sweep would resend them."""
    queue = Queue("notifier.test-no-ack", routing_key="notifier.test-no-ack")
    with _connect(redis_server.url) as connection:
        _publish(connection, queue, 3)
        got = _consume(connection, queue, ack=False, want=3, no_ack=True)
    assert [m.payload["n"] for m in got] == [0, 1, 2]
    assert redis_client.hlen("unacked") == 0 and redis_client.zcard("unacked_index") == 0


def test_an_acknowledgement_redis_refuses_leaves_the_record_and_the_worker_running(
    redis_server: RedisServer, redis_client: redis.Redis
) -> None:
    """As a read-only Redis after a failover: the sweep returns it later, already final."""
    queue = Queue("notifier.test-refused-ack", routing_key="notifier.test-refused-ack")
    with _connect(redis_server.url) as connection:
        _publish(connection, queue, 1)
        (message,) = _consume(connection, queue, ack=False, want=1)
        redis_client.config_set("min-replicas-to-write", 1)  # every write is refused now
        try:
            message.ack()
        finally:
            redis_client.config_set("min-replicas-to-write", 0)
    assert redis_client.hlen("unacked") == 1 and redis_client.zcard("unacked_index") == 1


def test_a_message_pushed_without_a_token_is_still_taken(
    redis_server: RedisServer, redis_client: redis.Redis
) -> None:
    """As kombu's own restore of unacknowledged messages pushes them: no wake-up token."""
    queue = Queue("notifier.test-no-token", routing_key="notifier.test-no-token")
    with _connect(redis_server.url) as connection:
        _publish(connection, queue, 1)
        raw = redis_client.rpop("notifier.test-no-token")
        redis_client.delete(wake_key("notifier.test-no-token"))
        assert raw is not None
        redis_client.lpush("notifier.test-no-token", raw)
        got = _consume(connection, queue, ack=True, want=1, seconds=5)
    assert [m.payload["n"] for m in got] == [0]


def test_a_redis_that_lost_the_pull_script_gets_its_text_again_and_nothing_is_lost(
    redis_server: RedisServer, redis_client: redis.Redis
) -> None:
    queue = Queue("notifier.test-noscript", routing_key="notifier.test-noscript")
    with _connect(redis_server.url) as connection:
        _publish(connection, queue, 10)
        first = _consume(connection, queue, ack=True, want=4)
        redis_client.script_flush()  # as after a restart or a failover
        redis_client.config_resetstat()
        _publish(connection, queue, 10)
        rest = _consume(connection, queue, ack=True, want=16)
        stats = redis_client.info("commandstats")
    assert [m.payload["n"] for m in first + rest] == [*range(10), *range(10)]
    assert stats["cmdstat_evalsha"]["failed_calls"] >= 1  # NOSCRIPT: the script did not run
    assert stats["cmdstat_eval"]["calls"] >= 1  # then its text again
    assert redis_client.hlen("unacked") == 0


def test_an_idle_worker_woken_by_a_message_has_not_taken_it(
    redis_server: RedisServer, redis_client: redis.Redis
) -> None:
    """A worker killed right after its wait returns leaves the message in the queue."""
    queue = Queue("notifier.test-wake", routing_key="notifier.test-wake")
    with (
        _connect(redis_server.url) as connection,
        Consumer(connection, [queue], callbacks=[lambda body, message: None]),
    ):
        channel = connection.default_channel
        connection.transport.cycle._register_BRPOP(channel)  # the worker waits
        _publish(connection, queue, 3)
        with pytest.raises(Empty):
            channel._brpop_read()  # woken; this is where a kill would land
        assert redis_client.llen("notifier.test-wake") == 3
        assert redis_client.hlen("unacked") == 0
        # And the wait left the queue's order as it was: first in, first out.
        got = _consume(connection, queue, ack=True, want=3)
        assert [m.payload["n"] for m in got] == [0, 1, 2]


def test_an_acknowledged_message_leaves_the_unacked_set(
    redis_server: RedisServer, redis_client: redis.Redis
) -> None:
    queue = Queue("notifier.test-ack", routing_key="notifier.test-ack")
    with Connection(redis_server.url, transport=Transport) as connection:
        _publish(connection, queue, 5)
        assert len(_consume(connection, queue, ack=True, want=5)) == 5
    assert redis_client.hlen("unacked") == 0 and redis_client.zcard("unacked_index") == 0


def _pull(client: redis.Redis, queue: str, most: int) -> list[Any]:
    keys = ["unacked", "unacked_index", queue, wake_key(queue)]
    reply: list[Any] = client.eval(PULL, len(keys), *keys, most, time.time(), 1)
    return reply


def test_pulling_stops_at_a_message_only_kombu_can_read(redis_client: redis.Redis) -> None:
    good = json.dumps(
        {"body": "", "properties": {"delivery_tag": "t1", "delivery_info": {
            "exchange": "", "routing_key": "q"}}}
    )  # fmt: skip
    redis_client.lpush("q", good, "not json", good.replace("t1", "t2"))  # popped from the right
    reply = _pull(redis_client, "q", 10)
    assert reply == [1, b"q", b"t1", good.encode()]
    assert redis_client.lrange("q", 0, -1) == [good.replace("t1", "t2").encode(), b"not json"]
    assert redis_client.hkeys("unacked") == [b"t1"]


def test_a_refused_write_takes_nothing(redis_client: redis.Redis) -> None:
    message = json.dumps(
        {
            "properties": {
                "delivery_tag": "t1",
                "delivery_info": {"exchange": "", "routing_key": "q"},
            }
        }
    )
    redis_client.lpush("q", message)
    redis_client.config_set("maxmemory", 1)
    try:
        with pytest.raises(redis.ResponseError, match="maxmemory"):
            _pull(redis_client, "q", 10)
    finally:
        redis_client.config_set("maxmemory", 0)
    assert redis_client.llen("q") == 1 and redis_client.hlen("unacked") == 0


def _envelope(tag: str, body: str, encoding: str = "utf-8") -> str:
    """A message as kombu stores it, with its body as given (not encoded)."""
    properties = {"delivery_tag": tag, "body_encoding": encoding,
                  "delivery_info": {"exchange": "", "routing_key": "notifier.test-bad"}}  # fmt: skip
    return json.dumps({"body": body, "content-type": "application/json",
                       "content-encoding": "utf-8", "headers": {}, "properties": properties})  # fmt: skip


def test_messages_that_cannot_be_delivered_are_parked_and_the_rest_go_on(
    redis_server: RedisServer, redis_client: redis.Redis
) -> None:
    queue = Queue("notifier.test-bad", routing_key="notifier.test-bad")
    good = [_envelope(f"g{n}", json.dumps({"n": n})) for n in range(4)]
    # Lua's JSON reader takes a raw tab inside a string; Python's does not.
    tab = _envelope("tab", "x").replace('"x"', '"a' + chr(9) + 'b"')
    badbody = _envelope("b64", "!!not base64!!", encoding="base64")
    # Popped from the right: good0, tab, good1, badbody, good2, good3.
    redis_client.lpush("notifier.test-bad", good[0], tab, good[1], badbody, good[2], good[3])
    with _connect(redis_server.url) as connection:
        got = _consume(connection, queue, ack=True, want=4)
        assert sorted(m.payload["n"] for m in got) == [0, 1, 2, 3]
        records = redis_client.lrange("unacked_unreadable", 0, -1)
        parked = [json.loads(raw, strict=False)[0] for raw in records]
        assert sorted(p["properties"]["delivery_tag"] for p in parked) == ["b64", "tab"]
        # Nothing is left to come back after the visibility timeout.
        assert redis_client.hlen("unacked") == 0 and redis_client.zcard("unacked_index") == 0


@pytest.mark.parametrize("options", [ONE_LIST, {}])
def test_a_sweep_restores_pulled_messages_whose_worker_died_and_parks_what_it_cannot_read(
    redis_server: RedisServer, redis_client: redis.Redis, options: dict[str, Any]
) -> None:
    queue = Queue("notifier.test-sweep", routing_key="notifier.test-sweep")
    with Connection(
        redis_server.url, transport=Transport,
        transport_options={**options, "visibility_timeout": 0},
    ) as connection:  # fmt: skip
        _publish(connection, queue, 3)
        assert len(_consume(connection, queue, ack=False, want=3)) == 3
        redis_client.hset("unacked", "broken", "[not json")
        redis_client.zadd("unacked_index", {"broken": 1})
        # What another worker's restore sweep does once the visibility timeout has passed.
        connection.default_channel.qos.restore_visible(num=10, interval=1)
        assert redis_client.llen("notifier.test-sweep") == 3
        assert redis_client.lrange("unacked_unreadable", 0, -1) == [b"[not json"]
        assert redis_client.hlen("unacked") == 0


def test_out_of_memory_nothing_is_taken_and_work_resumes_after(
    redis_server: RedisServer, redis_client: redis.Redis
) -> None:
    queue = Queue("notifier.test-oom", routing_key="notifier.test-oom")
    got: list[int] = []

    def drain(seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and len(got) < 3:
            with contextlib.suppress(socket.timeout):
                connection.drain_events(timeout=0.5)

    with _connect(redis_server.url) as connection:
        _publish(connection, queue, 3)

        def receive(body: Any, message: Message) -> None:
            got.append(body["n"])
            message.ack()

        with Consumer(connection, [queue], callbacks=[receive], prefetch_count=3):
            redis_client.config_set("maxmemory", 1)
            try:
                drain(2.5)
                assert got == []
                assert redis_client.llen("notifier.test-oom") == 3  # kombu's BRPOP takes them
                assert redis_client.hlen("unacked") == 0
            finally:
                redis_client.config_set("maxmemory", 0)
            drain(10)
    assert got == [0, 1, 2]


# The start-up check and the registration under kombu's names (notifier/broker/plugin.py).


def test_the_installed_kombu_has_every_name_the_transport_relies_on() -> None:
    assert transport_plugin.missing() == []
    transport_plugin.check()


def test_every_private_kombu_name_the_transport_uses_is_checked() -> None:
    """A private name transport.py starts to use, and does not define, must join the list."""
    source = Path(transport_plugin.__file__).with_name("transport.py").read_text()
    used = set(re.findall(r"\.(_[a-z]\w*)", source)) | set(re.findall(r'"(_[a-z]\w*)"', source))
    # Its own: class attributes, methods, and what its __init__ declares (annotated).
    own = set(re.findall(r"^    (?:def )?(_[a-z]\w*)\b", source, re.MULTILINE))
    own |= set(re.findall(r"self\.(_[a-z]\w*): ", source))
    # Its overrides of kombu's methods are kombu's names all the same.
    bases = (kombu_redis.Channel, kombu_redis.QoS, kombu_redis.Transport)
    overrides = {name for name in own if any(hasattr(base, name) for base in bases)}
    assert {"_brpop_start", "_brpop_read", "_put"} <= overrides
    listed = {name for _, name, _ in transport_plugin.KOMBU_NAMES}
    listed |= {use for _, _, uses in transport_plugin.KOMBU_NAMES for use in uses}
    assert ((used - own) | overrides) - listed == set()


def _refusal(capsys: pytest.CaptureFixture[str]) -> str:
    """The one line `require` stops the process with."""
    with pytest.raises(SystemExit) as stopped:
        transport_plugin.require()
    assert stopped.value.code == EXIT_CONFIG
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    return err.strip()


STOCK = "set BROKER_TRANSPORT=kombu to use kombu's stock Redis transport"


@pytest.mark.parametrize(
    ("owner", "name", "where"),
    [
        (kombu_redis.Channel, "_brpop_start", "redis.Channel"),
        (kombu_redis.Channel, "_flush_brpop_reauth", "redis.Channel"),
        (kombu_redis.Channel, "unacked_index_key", "redis.Channel"),
        (virtual.QoS, "can_consume_max_estimate", "virtual.QoS"),
        (virtual.Transport, "_deliver", "virtual.Transport"),
    ],
)
def test_a_name_kombu_no_longer_has_stops_the_process_with_one_line(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    owner: type,
    name: str,
    where: str,
) -> None:
    monkeypatch.delattr(owner, name)
    where = f"kombu.transport.{where}.{name}"
    assert _refusal(capsys) == (
        f"notifier: BROKER_TRANSPORT=fast does not fit the installed kombu {kombu.__version__}: "
        f"kombu lacks {where}; {STOCK}"
    )


def test_attributes_kombu_sets_in_init_are_read_from_its_init(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Not class attributes: a channel's __init__ sets them, and no longer would here."""
    init = kombu_redis.Channel.__init__

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)

    monkeypatch.setattr(kombu_redis.Channel, "__init__", __init__)
    line = _refusal(capsys)
    for name in ("_queue_cycle", "_expires", "brpop_timeout", "connection_errors"):
        assert re.search(rf"kombu\.transport\.redis\.Channel\.{name}[,;]", line)
    assert "kombu.transport.redis.Channel.__init__(handlers, _brpop_read)" in line


def test_a_method_that_no_longer_takes_what_the_transport_passes_is_named_with_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def _put(self: Any, queue: str, message: Any, **kwargs: Any) -> None:
        """kombu's, were it to stop taking `_publish_batch` out of kwargs."""

    monkeypatch.setattr(kombu_redis.Channel, "_put", _put)
    assert "kombu lacks kombu.transport.redis.Channel._put(_publish_batch);" in _refusal(capsys)


def test_a_kombu_of_another_series_stops_the_process(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(kombu, "VERSION", kombu.VERSION._replace(minor=8))
    monkeypatch.setattr(kombu, "__version__", "5.8.0")
    assert _refusal(capsys) == (
        "notifier: BROKER_TRANSPORT=fast does not fit the installed kombu 5.8.0: "
        f"notifier's transport is written for kombu 5.7.x; {STOCK}"
    )


@pytest.fixture
def kombu_names(monkeypatch: pytest.MonkeyPatch) -> None:
    """kombu's alias table and transport cache as they were, after the test."""
    for scheme in ("redis", "rediss"):
        monkeypatch.setitem(kombu_transport.TRANSPORT_ALIASES, scheme,
                            kombu_transport.TRANSPORT_ALIASES[scheme])  # fmt: skip
    monkeypatch.setattr(kombu_transport, "_transport_cache", {})


@pytest.mark.usefixtures("kombu_names")
def test_fast_registers_the_transport_under_kombus_names_so_the_scheme_stays() -> None:
    Connection("redis://127.0.0.1:1/0").get_transport_cls()  # cached before: replaced all the same
    transport_plugin.install("fast")
    for url in ("redis://127.0.0.1:1/0", "rediss://127.0.0.1:1/0"):
        connection = Connection(url)
        assert connection.get_transport_cls() is Transport
        assert connection.as_uri().startswith(url.split(":")[0] + "://")
    transport_plugin.install("kombu")
    assert Connection("redis://127.0.0.1:1/0").get_transport_cls() is kombu_redis.Transport


@pytest.mark.usefixtures("kombu_names")
@pytest.mark.parametrize("choice", ["fast", "kombu"])
def test_a_unix_socket_url_reaches_redis_over_its_socket(tmp_path: Path, choice: str) -> None:
    sock = tmp_path / "redis.sock"
    server = subprocess.Popen(
        [find_binary(), "--port", "0", "--unixsocket", str(sock), "--save", "",
         "--appendonly", "no", "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 10
        while not sock.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        transport_plugin.install(choice)
        url = transport_plugin.broker_url(f"unix://{sock}")
        with Connection(url, transport_options=ONE_LIST) as connection:
            assert connection.as_uri() == f"redis+socket://{sock}"
            queue = connection.SimpleQueue("notifier.test-socket")
            queue.put({"n": 1})
            message = queue.get(timeout=5)
            message.ack()
            assert message.payload == {"n": 1}
            assert isinstance(connection.transport, Transport) == (choice == "fast")
            queue.close()
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_every_transport_option_celeryconfig_gives_is_one_kombus_transport_takes() -> None:
    """So BROKER_TRANSPORT=kombu runs with the same settings (and the same one list a queue)."""
    code = "import json, celeryconfig; print(json.dumps(celeryconfig.broker_transport_options))"
    root = Path(__file__).parents[2]
    out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    options = json.loads(out.stdout)
    assert set(options) <= set(kombu_redis.Channel.from_transport_options)
    assert options["priority_steps"] == [0]
