"""Fan-out: a channel per topic, its ring, the views over it, each subscriber's outbox.

Uses only the wire wing; it never awaits, so the Kafka reader never waits on a browser.
"""
