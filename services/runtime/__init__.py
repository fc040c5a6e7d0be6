"""The one small runtime package every service shares: settings, Kafka wiring, codec, logging."""
