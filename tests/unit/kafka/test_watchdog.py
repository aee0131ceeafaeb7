from __future__ import annotations

from aiokafka import TopicPartition

from bridge.kafka.watchdog import StallDetector

P0, P1 = TopicPartition("t", 0), TopicPartition("t", 1)


def test_a_quiet_topic_is_not_a_stall() -> None:
    detector = StallDetector(10)
    assert not any(detector.stalled({P0: 5, P1: 7}, {P0: 5, P1: 7}, now) for now in range(0, 100, 5))


def test_a_consumer_that_moves_is_not_stalled_however_far_behind() -> None:
    detector = StallDetector(10)
    assert not any(detector.stalled({P0: now}, {P0: 1000}, now) for now in range(0, 100, 5))


def test_records_past_a_position_that_does_not_move_are_a_stall_after_the_bound() -> None:
    detector = StallDetector(10)
    assert not detector.stalled({P0: 5, P1: 7}, {P0: 5, P1: 9}, 0)
    assert not detector.stalled({P0: 5, P1: 7}, {P0: 5, P1: 9}, 9)
    assert detector.stalled({P0: 5, P1: 7}, {P0: 5, P1: 9}, 10)
    detector.reset()  # a new consumer gets the whole bound again
    assert not detector.stalled({P0: 5, P1: 7}, {P0: 5, P1: 9}, 15)
    assert not detector.stalled({P0: 5, P1: 7}, {P0: 5, P1: 9}, 24)
    assert detector.stalled({P0: 5, P1: 7}, {P0: 5, P1: 9}, 25)


def test_the_bound_counts_from_the_last_move() -> None:
    detector = StallDetector(10)
    detector.stalled({P0: 1}, {P0: 9}, 0)
    detector.stalled({P0: 2}, {P0: 9}, 8)
    assert not detector.stalled({P0: 2}, {P0: 9}, 17)
    assert detector.stalled({P0: 2}, {P0: 9}, 18)
