"""The four fashionstream topics: created with the configured partition count and a message size
large enough for frames, idempotently, on any Kafka-protocol broker (kafka-python admin API)."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass

from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient, NewTopic
from kafka.errors import KafkaError

from fashionstream.core.records import Topic
from fashionstream.core.settings import Settings
from infra.errors import TopicError

log = logging.getLogger(__name__)

TOPIC_ALREADY_EXISTS = 36  # Kafka protocol error code
MAX_MESSAGE_BYTES = "max.message.bytes"


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    replication: int
    max_message_bytes: int


@dataclass(frozen=True)
class TopicState:
    name: str
    partitions: int
    created: bool  # False: it existed already


def topic_specs(settings: Settings) -> list[TopicSpec]:
    """Every topic of fashionstream.core.records.Topic, sized from settings."""
    return [
        TopicSpec(
            name=topic.value,
            partitions=settings.topic_partitions,
            replication=settings.topic_replication,
            max_message_bytes=settings.max_message_bytes,
        )
        for topic in Topic
    ]


@contextlib.contextmanager
def admin_client(bootstrap: str, timeout_s: float) -> Iterator[KafkaAdminClient]:
    """A kafka-python admin client whose every wait is bounded by `timeout_s`."""
    timeout_ms = max(1, int(timeout_s * 1000))
    client = KafkaAdminClient(
        bootstrap_servers=bootstrap.split(","),
        client_id="fashionstream-admin",
        request_timeout_ms=timeout_ms,
        bootstrap_timeout_ms=timeout_ms,
    )
    try:
        yield client
    finally:
        client.close()


def kafka_ready(bootstrap: str, timeout_s: float) -> bool:
    """True when a broker at `bootstrap` answers a metadata request within `timeout_s`."""
    try:
        with admin_client(bootstrap, timeout_s) as admin:
            admin.list_topics()
        return True
    except (KafkaError, OSError) as exc:
        log.debug("kafka at %s not ready: %r", bootstrap, exc)
        return False


def ensure_topics(bootstrap: str, specs: list[TopicSpec], timeout_s: float) -> list[TopicState]:
    """Create the missing topics; report (and never shrink or grow) the ones that exist.

    An existing topic with fewer partitions than configured is logged, not changed: adding
    partitions moves keys to other partitions and breaks per-camera ordering, so it is an
    operator's decision. Its `max.message.bytes` is raised when the broker reports a lower one.
    """
    try:
        with admin_client(bootstrap, timeout_s) as admin:
            result = admin.create_topics(
                [
                    NewTopic(
                        s.name,
                        s.partitions,
                        s.replication,
                        topic_configs={MAX_MESSAGE_BYTES: str(s.max_message_bytes)},
                    )
                    for s in specs
                ],
                timeout_ms=int(timeout_s * 1000),
                raise_errors=False,
            )
            created: set[str] = set()
            for topic in result["topics"]:
                code = topic["error_code"]
                if code == 0:
                    created.add(topic["name"])
                elif code != TOPIC_ALREADY_EXISTS:
                    raise TopicError(
                        f"creating {topic['name']} failed: error {code}"
                        f" {topic.get('error_message') or ''}".rstrip()
                    )
            partitions = _partition_counts(admin, [s.name for s in specs])
            states = []
            for spec in specs:
                count = partitions.get(spec.name, 0)
                if count == 0:
                    raise TopicError(f"{spec.name} has no partitions after creation")
                if spec.name not in created:
                    if count < spec.partitions:
                        log.warning(
                            "topic %s exists with %d partitions (settings ask for %d); left as is",
                            spec.name,
                            count,
                            spec.partitions,
                        )
                    _raise_message_size(admin, spec)
                states.append(TopicState(spec.name, count, spec.name in created))
            return states
    except KafkaError as exc:
        raise TopicError(f"Kafka at {bootstrap}: {exc!r}") from exc


def _partition_counts(admin: KafkaAdminClient, names: list[str]) -> dict[str, int]:
    return {t["name"]: len(t["partitions"]) for t in admin.describe_topics(names)}


def _raise_message_size(admin: KafkaAdminClient, spec: TopicSpec) -> None:
    resource = ConfigResource(ConfigResourceType.TOPIC, spec.name)
    described = admin.describe_configs([resource], config_filter="all")
    entry = described.get("topic", {}).get(spec.name, {}).get(MAX_MESSAGE_BYTES)
    if not entry:
        return  # the broker does not report topic configs (Tansu): nothing to compare
    current = int(entry["value"])
    if current >= spec.max_message_bytes:
        return
    log.info(
        "raising %s of %s from %d to %d",
        MAX_MESSAGE_BYTES,
        spec.name,
        current,
        spec.max_message_bytes,
    )
    admin.alter_configs(
        [
            ConfigResource(
                ConfigResourceType.TOPIC,
                spec.name,
                configs={MAX_MESSAGE_BYTES: str(spec.max_message_bytes)},
            )
        ]
    )
