"""The pipeline's typed errors and the dead-letter reasons they carry (the reason a record is
filed under is part of the error, so both live here and records import them, never the reverse)."""

from __future__ import annotations

import enum


class DeadLetterReason(enum.StrEnum):
    """Why a record was dead-lettered. The metric label and the `reason` field of `DeadLetter`."""

    BAD_RECORD = "bad_record"  # not a valid record of its topic's schema
    INVALID_URL = "invalid_url"
    SCHEME_NOT_ALLOWED = "scheme_not_allowed"  # only http(s) is fetched
    ADDRESS_REFUSED = "address_refused"  # SSRF guard: private, loopback, link-local, ...
    DNS_ERROR = "dns_error"
    CONNECT_ERROR = "connect_error"
    TIMEOUT = "timeout"
    HTTP_STATUS = "http_status"  # a non-2xx answer
    TOO_MANY_REDIRECTS = "too_many_redirects"
    TOO_LARGE = "too_large"  # body over fetch_max_bytes
    NOT_AN_IMAGE = "not_an_image"  # magic bytes of no supported image format
    TRUNCATED_IMAGE = "truncated_image"
    CORRUPT_IMAGE = "corrupt_image"
    DECOMPRESSION_BOMB = "decompression_bomb"  # over fetch_max_pixels
    OVERSIZE_MESSAGE = "oversize_message"  # over max_message_bytes
    VIDEO_DECODE_ERROR = "video_decode_error"
    MODEL_ERROR = "model_error"
    SINK_REJECTED = "sink_rejected"  # Postgres refused the row itself (not an outage)
    INTERNAL_ERROR = "internal_error"  # no stage anticipated the failure: a bug, or a new case


class PipelineError(Exception):
    """Base of every error that sends a record to the dead-letter topic."""

    def __init__(self, reason: DeadLetterReason, detail: str) -> None:
        super().__init__(f"{reason.value}: {detail}")
        self.reason = reason
        self.detail = detail


class BadRecordError(PipelineError):
    """A Kafka record that is not a valid record of its topic's schema."""

    def __init__(self, detail: str) -> None:
        super().__init__(DeadLetterReason.BAD_RECORD, detail)


class FetchError(PipelineError):
    """An image URL that could not, or must not, be fetched."""


class DecodeError(PipelineError):
    """Bytes that are not a usable image or video."""


class ModelError(PipelineError):
    """Inference failed for a batch or an image."""


class SinkError(PipelineError):
    """Postgres refused or could not take a write."""
