"""The server's error hierarchy: one root per party at fault.

`InputError` is bad input from a client or a package; `RemoteError` is a backing service
(PostgreSQL, object store, MLflow) that failed; `StateError` is stored state in conflict.
Route modules map these to HTTP status codes; nothing below the route layer knows HTTP.
"""

from __future__ import annotations


class TinySphereError(Exception):
    """Root of every error raised on purpose by the server package."""


class InputError(TinySphereError):
    """A request or an uploaded package is malformed or breaks a limit."""


class PackageError(InputError):
    """A package cannot be imported as sent; `package_id` names it. Retrying will not help."""

    def __init__(self, message: str, package_id: str | None = None) -> None:
        self.package_id = package_id
        super().__init__(message)


class TooLargeError(InputError):
    """A body or an archive is bigger than the configured limit; `limit` is in bytes."""

    def __init__(self, message: str, limit: int) -> None:
        self.limit = limit
        super().__init__(message)


class DigestMismatchError(InputError):
    """A body's SHA-256 differs from the one its sender declared."""


class TooManyAttemptsError(InputError):
    """Too many failed credential attempts under one key; refused, right or wrong, for `retry_after_s` seconds."""

    def __init__(self, message: str, retry_after_s: int) -> None:
        self.retry_after_s = retry_after_s
        super().__init__(message)


class RemoteError(TinySphereError):
    """A backing service failed or timed out; `service` names it. The operation may be retried."""

    def __init__(self, message: str, service: str) -> None:
        self.service = service
        super().__init__(f"{service}: {message}")


class StorageUnavailableError(RemoteError):
    """The object store did not answer or refused the request."""

    def __init__(self, message: str) -> None:
        super().__init__(message, "object store")


class MlflowUnavailableError(RemoteError):
    """The MLflow tracking server did not answer or refused the request."""

    def __init__(self, message: str) -> None:
        super().__init__(message, "mlflow")


class StateError(TinySphereError):
    """Stored state contradicts the request (an id reused for other content, a used token)."""


class ConflictError(StateError):
    """The request conflicts with what is already stored; `existing` names what it collides with."""

    def __init__(self, message: str, existing: str | None = None) -> None:
        self.existing = existing
        super().__init__(message)


class NotFoundError(StateError):
    """The named resource does not exist (or is not visible to the caller)."""


class SignatureError(InputError):
    """Metadata is not signed by the threshold of keys its role requires (or is malformed)."""


class RangeNotSatisfiableError(InputError):
    """A `Range` header asks for bytes the object does not have; `size` is its length."""

    def __init__(self, message: str, size: int) -> None:
        self.size = size
        super().__init__(message)


class OnlineKeyError(StateError):
    """The server's online snapshot or timestamp key is missing or is not the one root names."""
