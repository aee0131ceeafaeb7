from __future__ import annotations

import logging

from bridge.kafka.logsummary import RepeatSummary


def record(name: str, msg: str, *args: object, level: int = logging.ERROR) -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, msg, args, None)


def test_repeats_within_the_window_are_counted_then_summarised() -> None:
    now = [0.0]
    summary = RepeatSummary(window=30, clock=lambda: now[0])
    passed = []
    for second in range(0, 70):
        now[0] = float(second)
        for node in (1, 2):  # several a second
            entry = record("aiokafka", "Unable connect to node with id %s: %s", node, "refused")
            if summary.filter(entry):
                passed.append((second, entry.getMessage()))
    assert passed == [
        (0, "Unable connect to node with id 1: refused"),
        (30, "Unable connect to node with id 1: refused (and 59 more like it in the 30 s before)"),
        (60, "Unable connect to node with id 1: refused (and 59 more like it in the 30 s before)"),
    ]


def test_each_kind_has_its_first_occurrence_logged() -> None:
    summary = RepeatSummary(window=30, clock=lambda: 0.0)
    assert summary.filter(record("aiokafka", "Unable to update metadata from %s", [1]))
    assert summary.filter(record("aiokafka.consumer.fetcher", "Failed fetch messages from %s: %s", 1, "x"))
    assert not summary.filter(record("aiokafka.consumer.fetcher", "Failed fetch messages from %s: %s", 1, "y"))


def test_other_loggers_and_lower_levels_pass_untouched() -> None:
    summary = RepeatSummary(window=30, clock=lambda: 0.0)
    assert all(summary.filter(record("bridge.source", "Kafka metadata request failed: %s", n)) for n in range(5))
    assert all(summary.filter(record("aiokafka", "Updating %s", n, level=logging.INFO)) for n in range(5))
