"""Errors raised by source adapters, named after what went wrong.

Each maps to one HTTP status in the webhook entrypoint.
"""

from ..errors import SegmentationError


class WebhookError(SegmentationError):
    status = 400

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class SignatureMismatchError(WebhookError):
    """The signature or token is missing or does not match any configured secret."""

    status = 401


class MalformedPayloadError(WebhookError):
    """The body was signed correctly but cannot be understood."""

    status = 400


class MethodNotAllowedError(WebhookError):
    status = 405


class UnsupportedMediaTypeError(WebhookError):
    status = 415


class PayloadTooLargeError(WebhookError):
    status = 413


class SecretNotConfiguredError(WebhookError):
    """No secret is configured for the source: every delivery is refused until one is."""

    status = 401
