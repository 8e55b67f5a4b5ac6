"""The pipeline's typed errors. Each carries the dead-letter reason its record is filed under."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fashionstream.records import DeadLetterReason


class PipelineError(Exception):
    """Base of every error that sends a record to the dead-letter topic."""

    def __init__(self, reason: DeadLetterReason, detail: str) -> None:
        super().__init__(f"{reason.value}: {detail}")
        self.reason = reason
        self.detail = detail


class BadRecordError(PipelineError):
    """A Kafka record that is not a valid record of its topic's schema."""

    def __init__(self, detail: str) -> None:
        from fashionstream.records import DeadLetterReason

        super().__init__(DeadLetterReason.BAD_RECORD, detail)


class FetchError(PipelineError):
    """An image URL that could not, or must not, be fetched."""


class DecodeError(PipelineError):
    """Bytes that are not a usable image or video."""


class ModelError(PipelineError):
    """Inference failed for a batch or an image."""


class SinkError(PipelineError):
    """Postgres refused or could not take a write."""
