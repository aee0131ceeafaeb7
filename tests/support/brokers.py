"""Test brokers of every Kafka version the bridge is tested against."""

from __future__ import annotations

from collections.abc import Callable

from bridge.kafka.local import LocalKafka


class Brokers:
    """One broker per Kafka version, started the first time a test asks for
    that version, all removed together: a run that asks for one version only
    starts one broker."""

    def __init__(self, make: Callable[[str], LocalKafka]) -> None:
        self._make = make
        self._started: dict[str, LocalKafka] = {}

    def get(self, version: str) -> LocalKafka:
        if version not in self._started:
            broker = self._make(version)
            broker.start()  # from the main thread: a broker dies with the thread that started it
            self._started[version] = broker
        return self._started[version]

    def remove(self) -> None:
        for broker in self._started.values():
            broker.remove()
