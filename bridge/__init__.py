"""kafka-sse-bridge: Kafka topics to browsers as Server-Sent Events."""
