"""`notifier dev`, `notifier bench` and `notifier fake-wechat`: the doors to the dev tools.

The tools themselves (notifier/devtools) are not in the wheel: they come with a source
checkout installed editable with the `devtools` extra. Without them, or without a package
they need, each command says in one line what to install and exits with status 1.
"""

from __future__ import annotations

import contextlib
import functools
import json
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import click
import requests

from notifier.client import NotifierClient, template_message
from notifier.processes import CAMPAIGN_WORKER, MESSAGE_WORKER, cpu_cores

F = TypeVar("F", bound=Callable[..., Any])

INSTALL = "from a source checkout run pip install -e '.[devtools]'"


def missing_message(name: str | None) -> str:
    """What to say when importing the dev tools failed on the module `name`."""
    if name is None or name == "notifier" or name.startswith("notifier."):
        return f"the development tools are not installed: {INSTALL}"
    return f"the development tools need {name}, which is not installed: {INSTALL}"


@contextlib.contextmanager
def devtools_required() -> Iterator[None]:
    """Import the dev tools inside this block; a failed import becomes one line and status 1."""
    try:
        yield
    except ImportError as exc:
        raise click.ClickException(missing_message(exc.name)) from None


@click.command(
    "fake-wechat",
    context_settings={"ignore_unknown_options": True, "help_option_names": []},
    add_help_option=False,
)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def fake_wechat(args: tuple[str, ...]) -> None:
    """Serve a fake WeChat API for development, tests and benchmarks (--help for options)."""
    with devtools_required():
        from notifier.devtools.fake_wechat.__main__ import main as serve_fake

    serve_fake(list(args))


@click.command()
@click.option(
    "--home",
    type=click.Path(path_type=Path),
    default=Path(".notifier-dev"),
    show_default=True,
    help="Where Redis data, the beat schedule and the secret live.",
)
@click.option("--web-port", type=int, default=8000, show_default=True)
@click.option("--wechat-port", type=int, default=8001, show_default=True)
@click.option("--flower-port", type=int, default=5555, show_default=True)
@click.option(
    "--blocked-share",
    type=click.FloatRange(0, 1),
    default=0.0,
    show_default=True,
    help="Share of openids whose delivery receipts say failed:user block (fixed per openid).",
)
@click.option(
    "--smoke", is_flag=True, help="Send one message through the stack, check it, then stop."
)
def dev(
    home: Path, web_port: int, wechat_port: int, flower_port: int, blocked_share: float, smoke: bool
) -> None:
    """Run the whole stack locally: Redis, fake WeChat, web, both workers, beat and Flower."""
    with devtools_required():
        from notifier.devtools.devstack import DevStack, Ports
        from notifier.devtools.redis_server import RedisServerNotFound

    ports = Ports(web_port, wechat_port, flower_port)
    stack = DevStack(home.resolve(), ports, echo=click.echo, blocked_share=blocked_share)
    for signum in (signal.SIGTERM, signal.SIGHUP):
        # A closed terminal (SIGHUP) stops the stack like a kill (SIGTERM): no orphans.
        signal.signal(signum, lambda *_: sys.exit(0))
    try:
        stack.start()
        _banner(stack)
        if smoke:
            _smoke(stack)
            return
        click.echo("Ctrl-C stops everything.\n")
        died = stack.watch()
        raise click.ClickException(f"{died} stopped; shutting the stack down")
    except KeyboardInterrupt:
        click.echo("stopping ...")
    except (RuntimeError, RedisServerNotFound) as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        stack.stop()


def _banner(stack: Any) -> None:
    from notifier.devtools.devstack import DEV_APP_ID

    exe = Path(sys.executable).parent / "notifier"
    command = str(exe) if exe.exists() else f"{sys.executable} -m notifier"
    p = stack.ports
    click.echo(
        "\n".join(
            [
                "",
                "notifier is running:",
                f"  API          http://127.0.0.1:{p.web}/v1/messages",
                f"  fake WeChat  http://127.0.0.1:{p.wechat}/   (what was delivered)",
                f"  Flower       http://127.0.0.1:{p.flower}/",
                f"  Redis        {stack.redis.url}",
                "",
                "Send a signed test message from another terminal:",
                f"  WEBHOOK_SECRET='{stack.secret}' NOTIFIER_URL=http://127.0.0.1:{p.web} \\",
                f"    {command} send --to oDevFollower0001 --template TPL_ORDER_SHIPPED "
                "--data thing1=Shipped --data character_string2=SF1234567890",
                "Then ask for its status (the id is in the answer):",
                f"  curl -H 'Authorization: Bearer {stack.api_token}' "
                f"http://127.0.0.1:{p.web}/v1/messages/<id>",
                "",
                "Operator commands (dead letters, quota) need the same Redis and account:",
                f"  export REDIS_URL={stack.redis.url} WECHAT_APP_ID={DEV_APP_ID}",
                f"  {command} dead-letters list",
                "",
            ]
        )
    )


def _smoke_status(stack: Any, message_id: str) -> None:
    url = f"http://127.0.0.1:{stack.ports.web}/v1/messages/{message_id}"
    headers = {"Authorization": f"Bearer {stack.api_token}"}
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        view = requests.get(url, headers=headers, timeout=2).json()
        # The fake's receipt moves the message on from sent, as WeChat's would.
        if view.get("status") == "delivered":
            click.echo(
                f"smoke: status API says {view['status']} after {view['attempts']} attempt(s)"
            )
            return
        time.sleep(0.2)
    raise click.ClickException(f"smoke: status of {message_id} never became delivered")


def _smoke(stack: Any) -> None:
    client = NotifierClient(f"http://127.0.0.1:{stack.ports.web}", stack.secret)
    response = client.post_message(template_message("oDevSmoke0001", "TPL_SMOKE", {"thing1": "ok"}))
    if response.status_code != 202:
        raise click.ClickException(f"smoke: HTTP {response.status_code} {response.text}")
    message_id = response.json()["id"]
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        listing = requests.get(f"http://127.0.0.1:{stack.ports.wechat}/_fake/messages", timeout=2)
        if any(m.get("client_msg_id") == message_id for m in listing.json()["messages"]):
            click.echo(f"smoke: message {message_id} reached the fake WeChat")
            _smoke_status(stack, message_id)
            return
        time.sleep(0.2)
    raise click.ClickException(f"smoke: message {message_id} did not arrive within 30 s")


def _concurrency(flag: str, default: int, text: str) -> Callable[[F], F]:
    """A worker line's concurrency option, defaulting to what the Procfile gives it."""
    return click.option(
        flag, type=click.IntRange(min=1), default=default, show_default=True, help=text
    )


@click.command()
@click.option(
    "--messages", type=int, default=10000, show_default=True, help="Single messages to drain."
)
@click.option("--recipients", type=int, default=30000, show_default=True, help="Campaign size.")
@click.option(
    "--latency-ms", type=float, default=50.0, show_default=True, help="Fake WeChat latency."
)
@click.option("--seconds", type=float, default=5.0, show_default=True, help="Each ingest run.")
@_concurrency("--concurrency", MESSAGE_WORKER.concurrency, "Threads per message worker.")
@_concurrency(
    "--campaign-concurrency", CAMPAIGN_WORKER.concurrency, "Greenlets per campaign worker."
)
@click.option(
    "--processes",
    type=click.IntRange(min=1),
    default=cpu_cores,
    show_default=f"one per CPU core, {cpu_cores()} here",
    help="Worker processes per queue.",
)
@click.option(
    "--phase",
    "phases",
    multiple=True,
    type=click.Choice(["fake", "ingest", "single", "campaigns", "latency"]),
    help="Run only this phase (repeatable), e.g. to compare two versions quickly. Default: all.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
@click.option("--smoke", is_flag=True, help="Tiny counts: check that the benchmark runs.")
def bench(
    messages: int,
    recipients: int,
    latency_ms: float,
    seconds: float,
    concurrency: int,
    campaign_concurrency: int,
    processes: int,
    phases: tuple[str, ...],
    as_json: bool,
    smoke: bool,
) -> None:
    """Start the stack against a fake WeChat with latency and measure it in one run."""
    with devtools_required():
        from notifier.devtools.bench import PHASES, run
        from notifier.devtools.benchstack import BenchConfig
        from notifier.devtools.redis_server import RedisServerNotFound
        from notifier.devtools.report import table

    if smoke:
        config = BenchConfig(
            messages=30,
            recipients=250,
            latency_ms=latency_ms,
            seconds=0.5,
            connections=2,
            concurrency=8,
            campaign_concurrency=8,
            probes=5,
            processes=1,
        )
    else:
        config = BenchConfig(
            messages,
            recipients,
            latency_ms,
            seconds,
            concurrency=concurrency,
            campaign_concurrency=campaign_concurrency,
            processes=processes,
        )
    with tempfile.TemporaryDirectory(prefix="notifier-bench-") as home:
        echo = functools.partial(click.echo, err=True)
        try:
            results = run(Path(home), config, echo=echo, phases=phases or PHASES)
        except RedisServerNotFound as exc:
            raise click.ClickException(str(exc)) from None
    click.echo(json.dumps(results, indent=2) if as_json else table(results, config))


COMMANDS = (dev, bench, fake_wechat)
