"""Reading Kafka: the live source, catch-up readers, client options, watchdog, log summary, a local broker.

Publishes into the fan-out wing; uses the wire wing for ids and events.
"""
