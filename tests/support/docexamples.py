"""The documentation's runnable examples: ```` ```console example ```` blocks.

A block is a terminal session: ``$ `` starts a command (a line ending in
``\\`` goes on on the next), the lines after it are what it prints. An
expected line matches an output line equal to it, ``…`` standing for any
text; blank expected lines are ignored, and the expected lines must appear in
that order among what the command printed (other lines may come between: logs
of a bridge started in the background, heartbeats). A command that shows no
output must exit with 0. A block tagged ``console example continued`` goes on
from the block before it, in the same session, as a reader following along
would.

The examples are written for ``scripts/dev`` on the default port; the test
runs them against its own broker and bridge, so addresses are replaced
(``SUBSTITUTIONS``) and a block that starts a bridge of its own
(``kafka-sse-bridge serve``) gets a free port for it.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

FENCE = re.compile(r"^```console example( continued)?\n(.*?)^```$", re.S | re.M)
STATUS = "@@example-status"
DOC_PORT = "8000"
DOC_BROKERS = ("kafka1:9092,kafka2:9092", "localhost:9094")


@dataclass(frozen=True)
class Command:
    text: str  # as a shell reads it, continuation lines joined
    expected: tuple[str, ...]


@dataclass(frozen=True)
class Example:
    where: str  # file:line of the (first) block
    commands: tuple[Command, ...]

    @property
    def starts_a_bridge(self) -> bool:
        return any("kafka-sse-bridge serve" in command.text for command in self.commands)


def _commands(block: str) -> list[Command]:
    commands: list[tuple[list[str], list[str]]] = []
    continuing = False
    for line in block.splitlines():
        if continuing:
            commands[-1][0].append(line)
        elif line.startswith("$ "):
            commands.append(([line[2:]], []))
        elif commands and line.strip():
            commands[-1][1].append(line)
        continuing = line.endswith("\\") and bool(commands) and not commands[-1][1]
    return [Command("\n".join(text), tuple(expected)) for text, expected in commands]


def examples(docs: Sequence[Path], root: Path) -> list[Example]:
    """Every example of ``docs``, a continued block merged into the one it continues."""
    found: list[Example] = []
    for doc in docs:
        text = doc.read_text()
        for match in FENCE.finditer(text):
            where = f"{doc.relative_to(root)}:{text.count(chr(10), 0, match.start()) + 1}"
            commands = tuple(_commands(match.group(2)))
            if not commands:
                raise ValueError(f"{where}: an example without a $ command")
            if match.group(1):
                if not found or not found[-1].where.startswith(f"{doc.relative_to(root)}:"):
                    raise ValueError(f"{where}: continues no example of its page")
                found[-1] = Example(found[-1].where, found[-1].commands + commands)
            else:
                found.append(Example(where, commands))
    return found


def substitute(text: str, *, port: int, brokers: str) -> str:
    for doc_brokers in DOC_BROKERS:
        text = text.replace(doc_brokers, brokers)
    text = text.replace("0.0.0.0", "127.0.0.1")  # loopback only
    return re.sub(rf"(127\.0\.0\.1:|localhost:|--port ){DOC_PORT}\b", rf"\g<1>{port}", text)


def _matches(pattern: str, line: str) -> bool:
    return re.fullmatch(".*".join(re.escape(part) for part in pattern.split("…")), line) is not None


def unmatched(expected: Sequence[str], printed: Sequence[str]) -> str | None:
    """The first expected line not found in order in ``printed``, or None."""
    lines = iter(printed)
    for pattern in (line for line in expected if line.strip()):
        if not any(_matches(pattern, line) for line in lines):
            return pattern
    return None


@dataclass
class Outcome:
    segments: list[list[str]]  # what each command printed, in order
    statuses: list[int]  # the exit status of each command that ended

    def problem(self, example: Example) -> str | None:
        for index, command in enumerate(example.commands):
            printed = self.segments[index] if index < len(self.segments) else []
            if command.expected:
                if (missing := unmatched(command.expected, printed)) is not None:
                    return f"$ {command.text}\n  did not print {missing!r}; it printed:\n" + "\n".join(printed)
            elif index >= len(self.statuses) or self.statuses[index] != 0:
                status = self.statuses[index] if index < len(self.statuses) else "none (still running)"
                return f"$ {command.text}\n  exit status {status}; it printed:\n" + "\n".join(printed)
        return None


def _outcome(output: str) -> Outcome:
    segments: list[list[str]] = [[]]
    statuses = []
    for line in output.splitlines():
        if line.startswith(STATUS):
            statuses.append(int(line.split()[1]))
            segments.append([])
        else:
            segments[-1].append(line)
    return Outcome(segments, statuses)


def expanded(example: Example, *, port: int, brokers: str) -> Example:
    """The example as it runs here: its commands and expected lines with this test's addresses."""
    return Example(example.where, tuple(
        Command(substitute(command.text, port=port, brokers=brokers),
                tuple(substitute(line, port=port, brokers=brokers) for line in command.expected))
        for command in example.commands))  # fmt: skip


def run(example: Example, *, port: int, brokers: str, workdir: Path, timeout: float = 30.0) -> str | None:
    """Run the example's commands in one bash session in ``workdir`` until each
    has printed what it shows (a stream or a server never ends by itself) or
    the session ends; then stop everything it started. What went wrong, or None."""
    here = expanded(example, port=port, brokers=brokers)
    script = "".join(f"{command.text}\nprintf '\\n{STATUS} %d\\n' $?\n" for command in here.commands)
    output_path = workdir / "output"
    # curl shows no progress meter on a terminal; here its output is a file
    (workdir / ".curlrc").write_text("silent\nshow-error\n")
    environment = {**os.environ, "CURL_HOME": str(workdir)}
    with open(output_path, "wb") as output:
        session = subprocess.Popen(["bash", "-c", script], cwd=workdir, stdout=output, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, start_new_session=True, env=environment)  # fmt: skip
    try:
        deadline = time.monotonic() + timeout
        while True:
            ended = session.poll() is not None
            problem = _outcome(output_path.read_text(errors="replace")).problem(here)
            if ended or problem is None or time.monotonic() > deadline:
                return problem
            time.sleep(0.1)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(session.pid, signal.SIGTERM)  # a bridge it started stops as it would on SIGTERM
        with contextlib.suppress(subprocess.TimeoutExpired):
            session.wait(10)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(session.pid, signal.SIGKILL)  # what is left: a bridge in the background of a bash that ended
        session.wait()
