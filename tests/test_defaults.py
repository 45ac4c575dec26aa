"""One set of process defaults everywhere, compared as the processes would receive them.

The Procfile's lines run under sh, as a Procfile runner runs them; docker-compose.yml is
interpolated as compose does (its environment block from a .env, `$$` kept as `$`) and its
commands then run under sh with that environment, as in the container; the Dockerfile's
command runs with the image's environment. Each run execs a stand-in `celery` or
`gunicorn` that prints the arguments it was given, so a shared-environment default that
overrides a command's default shows up here as the wrong number. The dev stack's and the
benchmark's commands are built in Python from notifier/processes.py.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import click
import pytest
import yaml

from notifier import config as config_module
from notifier.cli.main import main as cli
from notifier.config import client_endpoint, client_secret, load_settings
from notifier.devtools.benchstack import BenchConfig, worker_command, worker_names
from notifier.devtools.devstack import DevStack, Ports, web_command
from notifier.processes import (
    FLOWER_PORT,
    WEB_CONNECTIONS,
    WEB_PORT,
    WEB_WORKER_CLASS,
    WEB_WORKERS,
    WORKERS,
    WorkerKind,
    cpu_cores,
    instance_node_name,
)
from notifier.signature import new_secret

ROOT = Path(__file__).resolve().parents[1]
NOTIFIER_SERVICES = ("web", "worker", "campaigns", "beat", "flower")
# What a deployment's .env must give (compose stops on `${NAME:?...}` without them).
DOTENV = {
    "WECHAT_APP_ID": "wx_defaults_test",
    "WECHAT_APP_SECRET": "defaults_test_secret",
    "WEBHOOK_SECRET": new_secret(),
    "FLOWER_BASIC_AUTH": "admin:password",
}
CONCURRENCY_VARIABLES = ("WEB_CONCURRENCY", "WORKER_CONCURRENCY", "CAMPAIGN_CONCURRENCY")
# Celery's and gunicorn's short options, in case a command line switches to them.
ALIASES = {"-P": "--pool", "-c": "--concurrency", "-Q": "--queues", "-n": "--hostname",
           "-w": "--workers", "-b": "--bind", "-k": "--worker-class"}  # fmt: skip


# --- running the files' commands ----------------------------------------------------


@pytest.fixture(scope="module")
def run_sh(
    tmp_path_factory: pytest.TempPathFactory,
) -> Callable[[str, Mapping[str, str]], list[str]]:
    """Run a command line under sh in exactly this environment; return the argv it execs."""
    bin_dir = tmp_path_factory.mktemp("bin")
    for program in ("celery", "gunicorn"):
        stand_in = bin_dir / program
        stand_in.write_text('#!/bin/sh\nprintf "%s\\0" "$(basename "$0")" "$@"\n')
        stand_in.chmod(0o755)

    def run(command: str, env: Mapping[str, str]) -> list[str]:
        result = subprocess.run(
            ["/bin/sh", "-c", command],
            env={**env, "PATH": f"{bin_dir}:/usr/bin:/bin"},
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
        return result.stdout.split("\0")[:-1]

    return run


def procfile() -> dict[str, str]:
    lines = (ROOT / "Procfile").read_text().splitlines()
    return dict(line.split(": ", 1) for line in lines if line.strip() and not line.startswith("#"))


def procfile_argv(
    run_sh: Callable[[str, Mapping[str, str]], list[str]], process: str, env: Mapping[str, str]
) -> list[str]:
    """A Procfile line as a runner starts it: sh, the runner's PORT, the given variables."""
    return run_sh(procfile()[process], {"PORT": str(WEB_PORT), **env})


class MissingVariable(Exception):
    """compose's `${NAME:?message}` with NAME unset: `docker compose` would stop."""


def interpolate(text: str, env: Mapping[str, str]) -> str:
    """compose's interpolation: $$, $NAME, ${NAME}, ${NAME:-default}, ${NAME-default},
    ${NAME:?error}, ${NAME?error}, ${NAME:+alternative}, defaults nested."""
    out, i = [], 0
    while i < len(text):
        if text[i] != "$":
            out.append(text[i])
            i += 1
        elif text.startswith("$$", i):
            out.append("$")
            i += 2
        elif text.startswith("${", i):
            depth, end = 0, i + 1
            while True:
                depth += {"{": 1, "}": -1}.get(text[end], 0)
                if depth == 0:
                    break
                end += 1
            out.append(_substitute(text[i + 2 : end], env))
            i = end + 1
        elif match := re.match(r"[A-Za-z_][A-Za-z0-9_]*", text[i + 1 :]):
            out.append(env.get(match.group(), ""))
            i += 1 + match.end()
        else:
            out.append("$")
            i += 1
    return "".join(out)


def _substitute(expression: str, env: Mapping[str, str]) -> str:
    match = re.fullmatch(r"([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?+])(.*))?", expression, re.S)
    assert match, f"compose cannot read ${{{expression}}}"
    name, operator, argument = match.groups()
    value = env.get(name)
    if operator is None:
        return value or ""
    unset = value is None or (operator.startswith(":") and value == "")
    if operator.endswith("-"):
        return interpolate(argument, env) if unset else str(value)
    if operator.endswith("?"):
        if unset:
            raise MissingVariable(f"{name}: {argument}")
        return str(value)
    return "" if unset else interpolate(argument, env)


def _interpolated(node: Any, env: Mapping[str, str]) -> Any:
    if isinstance(node, str):
        return interpolate(node, env)
    if isinstance(node, list):
        return [_interpolated(item, env) for item in node]
    if isinstance(node, dict):
        return {key: _interpolated(value, env) for key, value in node.items()}
    return node


def compose(dotenv: Mapping[str, str] = DOTENV) -> dict[str, Any]:
    """docker-compose.yml's services after interpolation from this .env."""
    raw = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services: dict[str, Any] = _interpolated(raw["services"], dotenv)
    return services


def image_env() -> dict[str, str]:
    """The Dockerfile's ENV instructions."""
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    env: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("ENV "):
            for pair in shlex.split(line[4:]):
                name, _, value = pair.partition("=")
                env[name] = value
    return env


def container_env(service: str, dotenv: Mapping[str, str] = DOTENV) -> dict[str, str]:
    """A service's environment in its container: the image's, then compose's."""
    declared = compose(dotenv)[service].get("environment", {})
    return {**image_env(), **{name: str(value) for name, value in declared.items()}}


def compose_argv(
    run_sh: Callable[[str, Mapping[str, str]], list[str]],
    service: str,
    dotenv: Mapping[str, str] = DOTENV,
) -> list[str]:
    """A service's command as its container runs it."""
    command = compose(dotenv)[service]["command"]
    assert command[:2] == ["sh", "-c"], service
    return run_sh(command[2], container_env(service, dotenv))


def dockerfile_cmd() -> list[str]:
    lines = [
        line for line in (ROOT / "Dockerfile").read_text().splitlines() if line.startswith("CMD ")
    ]
    assert len(lines) == 1
    command: list[str] = json.loads(lines[0][4:])
    return command


@pytest.fixture
def dev_commands(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Callable[[], dict[str, list[str]]]:
    """The dev stack's command lines, built with the current environment."""

    def commands() -> dict[str, list[str]]:
        return DevStack(tmp_path / "dev", Ports(0, 0, 0), echo=lambda line: None).commands()

    for name in CONCURRENCY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    return commands


def bench_cli_default(name: str) -> Any:
    command = cli.commands["bench"]
    param = next(p for p in command.params if p.name == name)
    return param.get_default(click.Context(command))


# --- reading what a process was given -----------------------------------------------


def options(argv: list[str]) -> dict[str, str]:
    """`--name value`, `--name=value` and `-x value` pairs; flags map to ""."""
    found: dict[str, str] = {}
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg.startswith("-") and arg != "-":
            name, eq, value = arg.partition("=")
            if not eq and i + 1 < len(argv) and not argv[i + 1].startswith("--"):
                value = argv[i + 1]
                i += 1
            found[ALIASES.get(name, name)] = value
        i += 1
    return found


def worker_view(argv: list[str]) -> dict[str, Any]:
    given = options(argv)
    return {
        "pool": given.get("--pool", "prefork"),
        "concurrency": int(given["--concurrency"]),
        "prefetch": int(given.get("--prefetch-multiplier", "4")),  # Celery's default: 4
        "queues": given["--queues"],
    }


def expected_worker(kind: WorkerKind, concurrency: int | None = None) -> dict[str, Any]:
    return {
        "pool": kind.pool,
        "concurrency": kind.concurrency if concurrency is None else concurrency,
        "prefetch": kind.prefetch or 4,
        "queues": kind.queues,
    }


def web_view(argv: list[str]) -> dict[str, Any]:
    given = options(argv)
    return {
        "workers": int(given["--workers"]),
        "worker_class": given["--worker-class"],
        "connections": int(given["--worker-connections"]),
    }


def node_name(argv: list[str]) -> str:
    return options(argv)["--hostname"]


# --- the tests ----------------------------------------------------------------------


@pytest.mark.parametrize("kind", WORKERS.values(), ids=lambda kind: kind.process)
def test_each_worker_line_runs_one_pool_concurrency_prefetch_and_queue_everywhere(
    kind: WorkerKind,
    run_sh: Callable[[str, Mapping[str, str]], list[str]],
    dev_commands: Callable[[], dict[str, list[str]]],
) -> None:
    bench_default = BenchConfig(
        concurrency=bench_cli_default("concurrency"),
        campaign_concurrency=bench_cli_default("campaign_concurrency"),
    )
    seen = {
        "Procfile": worker_view(procfile_argv(run_sh, kind.process, {})),
        "docker-compose.yml": worker_view(compose_argv(run_sh, kind.process)),
        "notifier dev": worker_view(dev_commands()[kind.process]),
        "BenchConfig()": worker_view(worker_command(BenchConfig(), "w", kind.queue)),
        "notifier bench": worker_view(worker_command(bench_default, "w", kind.queue)),
    }
    assert seen == dict.fromkeys(seen, expected_worker(kind))


def test_the_benchmark_runs_one_worker_process_per_core_for_each_queue() -> None:
    assert BenchConfig().processes == bench_cli_default("processes") == cpu_cores() >= 1


@pytest.mark.parametrize("kind", WORKERS.values(), ids=lambda kind: kind.process)
def test_a_concurrency_set_in_the_environment_reaches_the_worker_everywhere(
    kind: WorkerKind,
    run_sh: Callable[[str, Mapping[str, str]], list[str]],
    dev_commands: Callable[[], dict[str, list[str]]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Set in .env it is the workers' concurrency; left out, the command's default holds
    (a default in compose's shared environment would override the command's)."""
    dotenv = {**DOTENV, kind.concurrency_variable: "37"}
    monkeypatch.setenv(kind.concurrency_variable, "37")
    seen = {
        "Procfile": worker_view(
            procfile_argv(run_sh, kind.process, {kind.concurrency_variable: "37"})
        ),
        "docker-compose.yml": worker_view(compose_argv(run_sh, kind.process, dotenv)),
        "notifier dev": worker_view(dev_commands()[kind.process]),
    }
    assert seen == dict.fromkeys(seen, expected_worker(kind, 37))
    # Empty counts as unset, as in sh's `${NAME:-default}`.
    empty = {kind.concurrency_variable: ""}
    monkeypatch.setenv(kind.concurrency_variable, "")
    seen = {
        "Procfile": worker_view(procfile_argv(run_sh, kind.process, empty)),
        "docker-compose.yml": worker_view(compose_argv(run_sh, kind.process, {**DOTENV, **empty})),
        "notifier dev": worker_view(dev_commands()[kind.process]),
    }
    assert seen == dict.fromkeys(seen, expected_worker(kind))


def test_the_web_runs_two_gevent_gunicorn_workers_on_port_8000_everywhere(
    run_sh: Callable[[str, Mapping[str, str]], list[str]],
    dev_commands: Callable[[], dict[str, list[str]]],
) -> None:
    dockerfile = dockerfile_cmd()
    assert dockerfile[:2] == ["sh", "-c"]
    argvs = {
        "Procfile": procfile_argv(run_sh, "web", {}),
        "docker-compose.yml": compose_argv(run_sh, "web"),
        "Dockerfile CMD": run_sh(dockerfile[2], image_env()),
        "notifier dev": dev_commands()["web"],
        "notifier bench": web_command(WEB_PORT),
    }
    expected = {
        "workers": WEB_WORKERS,
        "worker_class": WEB_WORKER_CLASS,
        "connections": WEB_CONNECTIONS,
    }
    assert {name: web_view(argv) for name, argv in argvs.items()} == dict.fromkeys(argvs, expected)
    for name in ("Procfile", "docker-compose.yml", "Dockerfile CMD"):
        assert options(argvs[name])["--bind"] == f"0.0.0.0:{WEB_PORT}", name
    assert compose()["web"]["ports"] == [f"{WEB_PORT}:{WEB_PORT}"]
    assert (
        str(WEB_PORT)
        in re.findall(r"^EXPOSE (.*)$", (ROOT / "Dockerfile").read_text(), re.M)[0].split()
    )
    # gunicorn reads WEB_CONCURRENCY itself, on import, and an empty one stops it.
    assert int(container_env("web")["WEB_CONCURRENCY"]) == WEB_WORKERS


def test_flower_listens_on_5555_everywhere(
    run_sh: Callable[[str, Mapping[str, str]], list[str]],
) -> None:
    dev = cli.commands["dev"]
    flower_option = next(p for p in dev.params if p.name == "flower_port")
    ports = {
        "Procfile": options(procfile_argv(run_sh, "flower", {}))["--port"],
        "docker-compose.yml": options(compose_argv(run_sh, "flower"))["--port"],
        "notifier dev": str(flower_option.get_default(click.Context(dev))),
        "Ports()": str(Ports().flower),
    }
    assert ports == dict.fromkeys(ports, str(FLOWER_PORT))
    assert compose()["flower"]["ports"] == [f"{FLOWER_PORT}:{FLOWER_PORT}"]
    assert (
        str(FLOWER_PORT)
        in re.findall(r"^EXPOSE (.*)$", (ROOT / "Dockerfile").read_text(), re.M)[0].split()
    )


def test_every_process_execs_its_program_so_it_gets_the_stop_signal() -> None:
    """Under `sh -c` as a container's PID 1, a shell ignores SIGTERM: `docker compose stop`
    would wait out stop_grace_period and SIGKILL a worker mid-task."""
    services = compose()
    for name, line in procfile().items():
        assert line.startswith("exec "), name
        assert services[name]["command"][2].startswith("exec "), name
    assert dockerfile_cmd()[2].startswith("exec ")


class Recorder(dict[str, str]):
    """An environment that notes every name read from it."""

    def __init__(self, values: Mapping[str, str], seen: set[str]) -> None:
        super().__init__(values)
        self.seen = seen

    def get(self, key: str, default: Any = None) -> Any:
        self.seen.add(key)
        return super().get(key, default)

    def __getitem__(self, key: str) -> str:
        self.seen.add(key)
        return super().__getitem__(key)

    def __contains__(self, key: object) -> bool:
        self.seen.add(str(key))
        return super().__contains__(key)


def config_variables() -> set[str]:
    """Every variable notifier/config.py reads: by name in its source, and as it runs."""
    source = Path(config_module.__file__).read_text()
    named = set(re.findall(r'env\.get\(\s*"([A-Za-z_][A-Za-z0-9_]*)"', source))
    named |= set(re.findall(r'_number\(\s*env,\s*"([A-Za-z_][A-Za-z0-9_]*)"', source))
    seen: set[str] = set()
    for base in ("https://api.weixin.qq.com", "http://wechat.internal"):
        env = Recorder({**DOTENV, "WECHAT_API_BASE": base}, seen)
        load_settings(env)
        client_endpoint(env)
        client_secret(env)
    return named | seen


# Read by config.py but deliberately not passed through by compose.
NOT_PASSED = {
    # The proxy variables' lower-case spellings: config.py reads them first, as curl does;
    # .env and the README use the upper-case ones, which compose passes.
    "https_proxy": "lower-case spelling of HTTPS_PROXY",
    "http_proxy": "lower-case spelling of HTTP_PROXY",
    "all_proxy": "lower-case spelling of ALL_PROXY",
    "no_proxy": "lower-case spelling of NO_PROXY",
    # Where `notifier send` posts: the operator's client setting, not the services'. In a
    # container the client's own default (127.0.0.1:$PORT) is the receiver.
    "NOTIFIER_URL": "the test client's target, not a service setting",
}
# Passed, but compose fixes the value.
FIXED = {
    "REDIS_URL": "redis://redis:6379/0",  # the compose file's own Redis
    "PORT": str(WEB_PORT),  # the published web port
    "FLOWER_PORT": str(FLOWER_PORT),  # the published Flower port
}
# Not read by config.py, but read by the commands or asked for by the deployment docs.
ALSO_PASSED = {
    "WEB_CONCURRENCY", "WORKER_CONCURRENCY", "CAMPAIGN_CONCURRENCY", "BROKER_TRANSPORT",
    "HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY", "NO_PROXY", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE",
}  # fmt: skip


def test_the_config_reader_finds_the_settings_it_should() -> None:
    found = config_variables()
    assert {"REDIS_URL", "WECHAT_APP_ID", "PORT", "MAX_BODY_BYTES", "HTTPS_PROXY",
            "https_proxy", "HTTP_PROXY", "ALL_PROXY", "NO_PROXY", "REQUESTS_CA_BUNDLE",
            "CURL_CA_BUNDLE"} <= found  # fmt: skip
    assert set(NOT_PASSED) <= found, "an exception no longer read by config.py: drop it"


@pytest.mark.parametrize("service", NOTIFIER_SERVICES)
def test_compose_passes_every_setting_through_from_dotenv(service: str) -> None:
    names = (config_variables() | ALSO_PASSED) - set(NOT_PASSED)
    dotenv = {**DOTENV, **{name: f"from-dotenv-{name}" for name in names}}
    env = container_env(service, dotenv)
    wrong = {
        name: env.get(name) for name in names if env.get(name) != FIXED.get(name, dotenv[name])
    }
    assert wrong == {}, "not passed through from .env"


@pytest.mark.parametrize("service", NOTIFIER_SERVICES)
def test_compose_leaves_unset_settings_at_config_defaults(service: str) -> None:
    """An empty value passed for an unset one must mean the default, and compose's own
    defaults must be config.py's."""
    env = container_env(service)
    assert load_settings(env) == load_settings({**DOTENV, "REDIS_URL": FIXED["REDIS_URL"]})


def test_worker_node_names_are_unique_per_instance(
    run_sh: Callable[[str, Mapping[str, str]], list[str]],
    dev_commands: Callable[[], dict[str, list[str]]],
) -> None:
    kinds = [kind.process for kind in WORKERS.values()]
    services = compose()
    for process in kinds:
        assert f"--hostname {instance_node_name(process)} " in procfile()[process]
        assert f"--hostname {instance_node_name(process)} " in services[process]["command"][2]
    instances = [(process, n) for process in kinds for n in (1, 2, 3)]
    # What each runner sets per instance: honcho 1.x and 2.x, foreman, Heroku, and honcho
    # run inside one Heroku dyno (so every process sees the same DYNO).
    runners: dict[str, Callable[[str], dict[str, str]]] = {
        "honcho": lambda name: {"HONCHO_PROCESS_NAME": name},
        "foreman": lambda name: {"PS": name},
        "heroku": lambda name: {"DYNO": name},
        "honcho in a dyno": lambda name: {"HONCHO_PROCESS_NAME": name, "DYNO": "run.1"},
    }
    for runner, env_for in runners.items():
        names = [
            node_name(procfile_argv(run_sh, process, env_for(f"{process}.{n}")))
            for process, n in instances
        ]
        assert len(set(names)) == len(names), (runner, names)
        assert all(name.endswith("@%h") for name in names), (runner, names)
    # Started by hand, one of each: still two names.
    plain = [node_name(procfile_argv(run_sh, process, {})) for process in kinds]
    assert len(set(plain)) == len(plain), plain
    # compose: each container of a scaled service has its own hostname, which %h takes;
    # a fixed hostname or container_name would defeat that (or stop the scaling).
    composed = [node_name(compose_argv(run_sh, process)) for process in kinds]
    assert len(set(composed)) == len(composed), composed
    for process, name in zip(kinds, composed, strict=True):
        assert name.endswith("@%h"), name
        assert not {"hostname", "container_name"} & set(services[process]), process
    dev = [node_name(dev_commands()[process]) for process in kinds]
    assert len(set(dev)) == len(dev), dev
    bench = [node_name(worker_command(BenchConfig(), name, kind.queue))
             for kind, prefix in zip(WORKERS.values(), ("single", "campaigns"), strict=True)
             for name in worker_names(prefix, 3)]  # fmt: skip
    assert len(set(bench)) == len(bench), bench


def test_the_stand_in_programs_see_what_sh_gives_them(
    run_sh: Callable[[str, Mapping[str, str]], list[str]],
) -> None:
    argv = run_sh('exec celery --a "b c" --d=${X:-${Y:-e}} %h', {"Y": "y"})
    assert argv == ["celery", "--a", "b c", "--d=y", "%h"]
    assert interpolate("$${A:-$${B:-x}} ${C:-c} ${D:-} $E $$", {"E": "e"}) == "${A:-${B:-x}} c  e $"
    with pytest.raises(MissingVariable):
        interpolate("${NEEDED:?set it}", {})
