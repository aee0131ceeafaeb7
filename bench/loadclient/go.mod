module kafka-sse-bridge/bench/loadclient

go 1.22
