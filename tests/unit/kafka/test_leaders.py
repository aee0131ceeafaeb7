from __future__ import annotations

import logging

import pytest

from bridge.kafka.leaders import Leaders


def test_a_move_is_logged_once_with_its_brokers_and_partitions(caplog: pytest.LogCaptureFixture) -> None:
    leaders = Leaders()
    with caplog.at_level(logging.INFO, logger="bridge.source"):
        leaders.observe({"orders": [1, 1, 2], "prices": [1]})
        assert caplog.messages == []  # the first look only learns the leaders
        for _ in range(3):  # the watcher looks again and again: the move is told the first time only
            leaders.observe({"orders": [2, 3, 2], "prices": [2]})
    assert caplog.messages == [
        "Kafka leader moved from broker 1 to broker 2: orders partition(s) 0; prices partition(s) 0",
        "Kafka leader moved from broker 1 to broker 3: orders partition(s) 1",
    ]


def test_partitions_without_a_leader_are_counted_and_told(caplog: pytest.LogCaptureFixture) -> None:
    leaders = Leaders()
    leaders.observe({"orders": [1, 1, 2]})
    with caplog.at_level(logging.INFO, logger="bridge.source"):
        leaders.observe({"orders": [-1, -1, 2]})
        assert leaders.without_leader == 2
        leaders.observe({"orders": [3, 3, 2]})
    assert leaders.without_leader == 0
    assert [(record.levelname, record.getMessage()) for record in caplog.records] == [
        ("WARNING", "Kafka leader lost: broker 1 led orders partition(s) 0, 1, no broker leads them now"),
        ("INFO", "Kafka leader back: broker 3 leads orders partition(s) 0, 1"),
    ]
