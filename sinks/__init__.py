"""Sinks: the Postgres writer, Prometheus metrics and reports. No Kafka."""
