"""Typed errors of the embedded stack. None of them is a record's fault: they stop `up`/`down`."""

from __future__ import annotations


class StackError(Exception):
    """The local stack could not be started, checked or stopped."""


class BrokerError(StackError):
    """The Kafka-protocol broker did not start, answer or stop in time."""


class PostgresError(StackError):
    """Postgres could not be initialised, started, reached or stopped."""


class TopicError(StackError):
    """A topic could not be created or is not usable as configured."""


class MigrationError(StackError):
    """A SQL migration failed, or an applied one was edited afterwards."""
