"""Helpers shared by the test layers: a strict SSE parser, a Kafka broker, a bridge process."""
