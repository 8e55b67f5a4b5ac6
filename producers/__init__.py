"""Producers: catalogue feeds and video sources -> Kafka (kafka-python)."""
