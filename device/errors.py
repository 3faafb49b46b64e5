"""The device's error hierarchy: one root per party at fault.

`InputError` is bad input from the operator (config, bundle, images); `RemoteError` is the
server or the network; `StateError` is local state that is missing or inconsistent.
"""

from __future__ import annotations

from contract.errors import BundleError, ContractError

__all__ = ["BundleError"]  # the contract's: a bundle the contract refuses is a device error like any other

TinyLCMError = ContractError
"""Root of every error raised on purpose by the device package (the contract's root); `path` names the file."""


class InputError(TinyLCMError):
    """Something the operator supplied is wrong."""


class ConfigError(InputError):
    """The JSON configuration has an unknown key, a wrong type or a bad value."""


class FrameError(InputError):
    """One frame cannot be used (wrong size, mode, or undecodable); the stream goes on."""


class SourceError(InputError):
    """A capture source cannot start (empty folder, unknown spec, camera missing)."""


class RemoteError(TinyLCMError):
    """The server or the network failed; the operation may be retried."""


class StateError(TinyLCMError):
    """Local state on disk is missing, corrupt or of another shape than expected."""


class ServerUnavailableError(RemoteError):
    """The server or the network failed in a way a retry may fix (timeout, reset, 5xx, 429/503)."""

    def __init__(self, message: str, status: int | None = None, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after  # seconds the server asked us to wait, if it said


class ServerRefusedError(RemoteError):
    """The server refused a request for good (4xx); repeating it unchanged cannot help."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class PackageTooLargeError(ServerRefusedError):
    """413: the package is over the server's size limit."""


class PackageConflictError(ServerRefusedError):
    """409: the server holds other bytes under this package id, or these seqs from another package."""


class DeviceAuthError(ServerRefusedError):
    """401/403: the device secret (or enrollment token) is not accepted."""


class UpdateRejectedError(RemoteError):
    """The repository or a bundle failed verification (signatures, expiry, hashes, length): not installed.

    `reason` is a short machine-readable word for the heartbeat; `retry` says whether asking again later may help
    (a repaired mirror, fresh metadata) or whether this target can never be installed on this device.
    """

    def __init__(self, message: str, reason: str, retry: bool = True) -> None:
        super().__init__(message)
        self.reason = reason
        self.retry = retry


class TargetMismatchError(UpdateRejectedError):
    """A correctly signed bundle that is not for this device (device type, runtime, input)."""

    def __init__(self, message: str, reason: str = "target_mismatch") -> None:
        super().__init__(message, reason, retry=False)


class UnsafeArchiveError(BundleError):
    """A bundle tar holds something other than plain files at its root, or more than the limits allow."""


class SmokeTestError(BundleError):
    """A staged bundle's model did not load or did not give finite outputs of the declared shapes."""


class SlotError(StateError):
    """The A/B model slots or the `models/current` symlink are not in a shape the updater can repair."""
