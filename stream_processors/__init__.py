"""The Faust app and its agents: fetch, tag, sink, dead letters. Kafka lives here."""
