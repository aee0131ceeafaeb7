"""Reading the operators' stack files as their tools read them: the compose
file through Compose itself, the Dockerfile by its instructions, the build
context through .dockerignore's rules."""

from __future__ import annotations

import functools
import json
import re
import shlex
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
SETUP_HINT = "run scripts/setup, which installs the Debian packages the tests need"


def tool(name: str) -> str:
    """The path of a command the tests need; a missing one fails the test, never skips it."""
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")  # nginx, outside a user's PATH
    if path is None:
        pytest.fail(f"{name} is not installed: {SETUP_HINT} (apt-get install {name})", pytrace=False)
    return path


def load_yaml(text: str) -> Any:
    return yaml.safe_load(text)


def compose_config() -> dict[str, Any]:
    """docker-compose.yml as Compose reads it: ``docker-compose config``
    validates it against the Compose schema (no engine needed), resolves
    relative paths and rejects a build context that does not exist."""
    result = subprocess.run(
        [tool("docker-compose"), "--project-directory", str(ROOT), "-f", str(COMPOSE_FILE), "config"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, f"docker-compose rejects {COMPOSE_FILE.name}:\n{result.stderr}"
    assert "WARNING" not in result.stderr, result.stderr
    config: dict[str, Any] = load_yaml(result.stdout)
    return config


@functools.cache
def compose_services() -> dict[str, dict[str, Any]]:
    services: dict[str, dict[str, Any]] = compose_config()["services"]
    return services


def volumes(service: dict[str, Any]) -> dict[str, str]:
    """A service's mounts, container path → host path (absolute after ``docker-compose config``) or volume name."""
    mounts: dict[str, str] = {}
    for volume in service.get("volumes", []):
        source, target, *_ = volume.split(":") if isinstance(volume, str) else (volume["source"], volume["target"])
        mounts[target] = source
    return mounts


def bind_mounts(service: dict[str, Any]) -> dict[str, Path]:
    """A service's bind mounts (not its named volumes), container path → host path."""
    return {target: Path(source) for target, source in volumes(service).items() if source.startswith("/")}


def host_path(service: dict[str, Any], container_path: str) -> Path | None:
    """Where a path inside a service's container comes from on the host, if a bind mount holds it."""
    for target, source in bind_mounts(service).items():
        if container_path == target or container_path.startswith(target.rstrip("/") + "/"):
            return source / Path(container_path).relative_to(target)
    return None


@dataclass(frozen=True)
class Instruction:
    stage: int  # index of the FROM it belongs to; -1 before the first
    keyword: str  # upper case
    arguments: str


@dataclass
class Dockerfile:
    instructions: list[Instruction] = field(default_factory=list)

    @classmethod
    def read(cls, path: Path = DOCKERFILE) -> Dockerfile:
        logical = re.sub(r"\\\n", " ", "\n".join(line for line in path.read_text().splitlines()
                                                 if not line.lstrip().startswith("#")))  # fmt: skip
        dockerfile = cls()
        stage = -1
        for line in logical.splitlines():
            if not line.strip():
                continue
            keyword, _, arguments = line.strip().partition(" ")
            if keyword.upper() == "FROM":
                stage += 1
            dockerfile.instructions.append(Instruction(stage, keyword.upper(), " ".join(arguments.split())))
        return dockerfile

    def all(self, keyword: str, stage: int | None = None) -> list[str]:
        return [i.arguments for i in self.instructions if i.keyword == keyword and stage in (None, i.stage)]

    def one(self, keyword: str, stage: int | None = None) -> str:
        found = self.all(keyword, stage)
        assert len(found) == 1, f"expected one {keyword} (stage {stage}), found {found}"
        return found[0]

    @property
    def last_stage(self) -> int:
        return self.instructions[-1].stage

    def base_images(self) -> list[str]:
        """Every stage's image, with the global ARG defaults substituted."""
        args = dict(argument.split("=", 1) for argument in self.all("ARG", stage=-1) if "=" in argument)
        images = []
        for arguments in self.all("FROM"):
            image = arguments.split()[0]
            images.append(re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: args[m.group(1) or m.group(2)], image))
        return images

    def env(self, stage: int) -> dict[str, str]:
        """The ENV of a stage, ``KEY=VALUE`` pairs as the shell would split them."""
        values: dict[str, str] = {}
        for arguments in self.all("ENV", stage):
            for pair in shlex.split(arguments):
                name, _, value = pair.partition("=")
                values[name] = value
        return values

    def exec_form(self, keyword: str, stage: int) -> list[str]:
        """ENTRYPOINT, CMD or HEALTHCHECK ... CMD in JSON form (the form that needs no shell)."""
        arguments = self.one(keyword, stage)
        if keyword == "HEALTHCHECK":
            arguments = arguments.split(" CMD ", 1)[1]
        command = json.loads(arguments)
        assert isinstance(command, list), arguments
        assert all(isinstance(part, str) for part in command), arguments
        return command

    def build_stage_copies(self) -> list[str]:
        """Sources of COPY instructions that take files from the build context (not --from another stage)."""
        sources: list[str] = []
        for arguments in self.all("COPY"):
            parts = [part for part in arguments.split() if not part.startswith("--")]
            if "--from=" not in arguments:
                sources.extend(parts[:-1])
        return sources


def _pattern(pattern: str) -> re.Pattern[str]:
    """A .dockerignore pattern (Go's filepath.Match plus ``**``) as a regular expression."""
    out = []
    index = 0
    while index < len(pattern):
        if pattern.startswith("**/", index):
            out.append("(?:.*/)?")
            index += 3
        elif pattern.startswith("**", index):
            out.append(".*")
            index += 2
        elif pattern[index] == "*":
            out.append("[^/]*")
            index += 1
        elif pattern[index] == "?":
            out.append("[^/]")
            index += 1
        else:
            out.append(re.escape(pattern[index]))
            index += 1
    return re.compile("".join(out))


def ignored_by_dockerignore(path: str, rules: str) -> bool:
    """Whether Docker leaves ``path`` (relative to the context) out of the build
    context: the last rule matching the path or one of its parent directories
    decides, ``!`` rules bring paths back."""
    excluded = False
    parents = [str(Path(*Path(path).parts[: n + 1])) for n in range(len(Path(path).parts))]
    for line in rules.splitlines():
        rule = line.strip()
        if not rule or rule.startswith("#"):
            continue
        negated = rule.startswith("!")
        pattern = _pattern(rule.lstrip("!").strip("/"))
        if any(pattern.fullmatch(candidate) for candidate in parents):
            excluded = not negated
    return excluded
