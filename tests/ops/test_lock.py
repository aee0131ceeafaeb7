"""The lock (uv.lock and its pip views in requirements/, made by scripts/lock):
it agrees with pyproject.toml, a change to either side that the other lacks is
caught without asking the registry, and the environment the tests run in is
exactly what it pins."""

from __future__ import annotations

import importlib.metadata
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.ops.stackfiles import ROOT

LOCK = ROOT / "scripts" / "lock"
VIEWS = ROOT / "requirements"


def check(root: Path) -> subprocess.CompletedProcess[str]:
    """``scripts/lock --check`` in ``root``."""
    return subprocess.run([str(root / "scripts" / "lock"), "--check"], cwd=root, capture_output=True, text=True,
                          timeout=60, check=False)  # fmt: skip


def pins(view: Path) -> dict[str, Requirement]:
    """A requirements view's pins (``name==version ; marker``), hashes left out."""
    logical = re.sub(r"\\\n", " ", view.read_text())
    lines = [line.split(" --hash")[0].strip() for line in logical.splitlines()]
    requirements = [Requirement(line) for line in lines if line and not line.startswith("#")]
    return {canonicalize_name(requirement.name): requirement for requirement in requirements}


def test_the_lock_agrees_with_pyproject() -> None:
    checked = check(ROOT)
    assert checked.returncode == 0, f"scripts/lock --check fails:\n{checked.stderr}"


def add_to_dev_extra(text: str) -> str:
    return text.replace('    "ruff>=', '    "tomli-w>=1",\n    "ruff>=', 1)


def raise_a_bound(text: str) -> str:
    return re.sub(r'"orjson>=[\d.]+"', '"orjson>=99"', text, count=1)


def drop_a_dependency(text: str) -> str:
    return re.sub(r'\n    "prometheus-client>=[\d.]+",', "", text, count=1)


@pytest.mark.parametrize("edit", [add_to_dev_extra, raise_a_bound, drop_a_dependency])
def test_a_pyproject_change_not_in_the_lock_fails_the_check(tmp_path: Path, edit: Callable[[str], str]) -> None:
    root = copy_of_the_lock(tmp_path)
    pyproject = root / "pyproject.toml"
    edited = edit(pyproject.read_text())
    assert edited != pyproject.read_text(), f"{edit.__name__} changed nothing: pyproject.toml was reshaped"
    pyproject.write_text(edited)
    checked = check(root)
    assert checked.returncode != 0, f"{edit.__name__}: scripts/lock --check passes"
    assert "uv.lock does not match pyproject.toml: run scripts/lock" in checked.stderr


def test_a_view_that_is_not_what_the_lock_gives_fails_the_check(tmp_path: Path) -> None:
    root = copy_of_the_lock(tmp_path)
    view = root / "requirements" / "service.txt"
    (pinned,) = re.findall(r"^fastapi==\S+", view.read_text(), re.MULTILINE)
    view.write_text(view.read_text().replace(pinned, "fastapi==0.115.0"))
    checked = check(root)
    assert checked.returncode != 0, "a hand-edited requirements/service.txt passes"
    assert "requirements/service.txt is not what uv.lock gives: run scripts/lock" in checked.stderr


def copy_of_the_lock(folder: Path) -> Path:
    """What scripts/lock reads, in ``folder``, with this checkout's .venv (and so its uv)."""
    for name in ("pyproject.toml", "README.md", "uv.lock", "scripts/lock"):
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, folder / name)
    shutil.copytree(VIEWS, folder / "requirements")
    (folder / ".venv").symlink_to(ROOT / ".venv")
    return folder


def test_the_environment_the_tests_run_in_is_the_lock() -> None:
    """scripts/setup installed every pin of requirements/dev.txt at exactly its
    version (the same on every machine and in CI), and the service's pins are
    a part of it."""
    everything = pins(VIEWS / "dev.txt")
    service = pins(VIEWS / "service.txt")
    assert "fastapi" in service
    assert "pytest" in everything
    assert "pytest" not in service, "the image would ship the test tools"
    differ = [name for name, pin in service.items() if str(pin) != str(everything.get(name))]
    assert not differ, f"the views pin these differently: {differ}"
    wrong = {}
    for name, pin in everything.items():
        if pin.marker is not None and not pin.marker.evaluate():
            continue  # not for this platform
        (locked,) = pin.specifier
        try:
            installed = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            installed = "not installed"
        if installed != locked.version:
            wrong[name] = f"{installed}, locked {locked.version}"
    assert not wrong, f"run scripts/setup: not as locked: {wrong}"
