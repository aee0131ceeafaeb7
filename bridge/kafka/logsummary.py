"""Repeated Kafka client errors, summarised.

While a broker is down aiokafka logs each failed connection, metadata update
and fetch at ERROR, several times a second, for as long as the outage lasts.
The first of each kind is logged as it is; the same message (same logger,
same format string) within ``window`` seconds after it is counted instead,
and the next one logged after the window says how many were left out.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

SUMMARISED_LOGGERS = ("aiokafka",)
WINDOW_SECONDS = 30.0


class RepeatSummary(logging.Filter):
    def __init__(self, window: float = WINDOW_SECONDS, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self._window = window
        self._clock = clock
        self._seen: dict[tuple[str, object], tuple[float, int]] = {}  # (logger, format) → (logged at, left out)

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING or not record.name.startswith(SUMMARISED_LOGGERS):
            return True
        key = (record.name, record.msg)
        now = self._clock()
        seen = self._seen.get(key)
        if seen is not None and now - seen[0] < self._window:
            self._seen[key] = (seen[0], seen[1] + 1)
            return False
        self._seen[key] = (now, 0)
        if seen is not None and seen[1]:
            logged_at, left_out = seen
            record.msg = f"{record.getMessage()} (and {left_out} more like it in the {now - logged_at:.0f} s before)"
            record.args = ()
        return True


def summarise_repeats(handlers: list[logging.Handler]) -> None:
    summary = RepeatSummary()
    for handler in handlers:
        handler.addFilter(summary)
