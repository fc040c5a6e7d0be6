"""``baton bench``: throughput, latency, cost per order and crash survival, beside raw Kafka."""
