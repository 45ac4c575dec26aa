"""The wheel carries the runtime and nothing of the dev tools.

It is built, as the Dockerfile's builder stage builds it, from exactly the files that stage
copies, so what is checked here is what the image installs. It is compared with the source
tree: every file under notifier/ outside notifier/devtools (modules, Lua scripts, any data
the runtime loads) must be in it, and nothing under notifier/devtools.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path, PurePosixPath

import pytest

ROOT = Path(__file__).resolve().parents[1]
DEVTOOLS = PurePosixPath("notifier/devtools")


def builder_copies() -> list[tuple[list[str], str]]:
    """The builder stage's COPY instructions: (sources, destination) each."""
    copies: list[tuple[list[str], str]] = []
    stage = ""
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        if line.startswith("FROM "):
            stage = line.split()[-1]
        elif stage == "builder" and line.startswith("COPY "):
            *sources, destination = shlex.split(line[5:])
            copies.append((sources, destination))
    assert copies, "the Dockerfile has no builder stage that copies the sources"
    return copies


@pytest.fixture(scope="module")
def wheel_files(tmp_path_factory: pytest.TempPathFactory) -> set[str]:
    """The paths inside the wheel built from what the Dockerfile's builder copies."""
    context = tmp_path_factory.mktemp("context")
    junk = shutil.ignore_patterns("__pycache__", "*.pyc")
    for sources, destination in builder_copies():
        for source in sources:
            # As COPY does: a folder's contents go into the destination; a file goes into
            # it when it ends in "/", else becomes it.
            origin = ROOT / source
            target = context / destination
            if origin.is_dir():
                shutil.copytree(origin, target, ignore=junk, dirs_exist_ok=True)
            else:
                if destination.endswith("/"):
                    target = target / origin.name
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(origin, target)
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
         "--quiet", "--wheel-dir", str(out), str(context)],
        env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"},
        check=True,
        timeout=120,
    )  # fmt: skip
    (wheel,) = out.glob("notifier-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        return set(archive.namelist())


def source_files() -> set[str]:
    """Every file of the notifier package in the checkout, compiled files aside."""
    return {
        path.relative_to(ROOT).as_posix()
        for path in (ROOT / "notifier").rglob("*")
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc"
    }


def test_the_wheel_has_no_dev_tools(wheel_files: set[str]) -> None:
    leaked = sorted(f for f in wheel_files if PurePosixPath(f).is_relative_to(DEVTOOLS))
    assert not leaked


def test_the_wheel_has_every_runtime_file_of_the_source_tree(wheel_files: set[str]) -> None:
    runtime = {f for f in source_files() if not PurePosixPath(f).is_relative_to(DEVTOOLS)}
    assert any(f.endswith(".py") for f in runtime)
    assert runtime - wheel_files == set()


def test_the_wheel_has_the_top_level_modules_the_processes_load(wheel_files: set[str]) -> None:
    # gunicorn loads wsgi:app and Celery reads celeryconfig, from site-packages in the image.
    assert {"wsgi.py", "celeryconfig.py"} <= wheel_files
    tops = {f.split("/", 1)[0] for f in wheel_files}
    tops = {top for top in tops if not top.endswith(".dist-info")}
    assert tops == {"notifier", "wsgi.py", "celeryconfig.py"}
