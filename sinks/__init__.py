"""Sinks: the Postgres writers (tagged images, sightings) and the queries over them. No Kafka;
the metrics they count live in fashionstream.core.metrics."""
