"""The client maps answers to errors, retries what may work next time, and honours Retry-After."""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace

import pytest

from device.errors import (
    DeviceAuthError,
    PackageConflictError,
    PackageTooLargeError,
    ServerRefusedError,
    ServerUnavailableError,
)
from device.outbox.records import Record
from device.sync import ClientSettings, ImagePolicy, RetryPolicy, SyncClient
from device.sync.package import build
from device.sync.retry import parse_retry_after, wait_retry_after
from tests.device.sync.conftest import FAST_RETRY
from tests.device.sync.contract_server import SECRET, ContractState, Fault


def _package(seq: int = 1, body: str = "{}") -> object:
    record = Record(seq, "log", "2026-01-01T00:00:00+00:00", 1, body, None, 70)
    return build("dev-1", [record], lambda _: None, ImagePolicy())


def _put(url: str, package: object, retry: RetryPolicy = FAST_RETRY) -> bool:
    async def main() -> bool:
        async with SyncClient(url, ClientSettings(connect_timeout_s=2, read_timeout_s=5, retry=retry),
                              secret=SECRET) as client:
            return await client.put_package(package)  # type: ignore[arg-type]

    return asyncio.run(main())


def test_put_is_idempotent_201_then_200(server_url: str, contract: ContractState) -> None:
    assert _put(server_url, _package()) is True
    assert _put(server_url, _package()) is False
    assert [r[2] for r in contract.requests] == [201, 200]


def test_other_bytes_under_a_known_id_are_a_conflict(server_url: str) -> None:
    _put(server_url, _package())
    with pytest.raises(PackageConflictError):
        _put(server_url, _package(body='{"other":1}'))


@pytest.mark.parametrize("forged", [{"device_id": "dev-2"}, {"sha256": "0" * 64}, {"id": "another"}, {"id": None}])
def test_an_answer_that_names_something_else_is_no_acknowledgement(server_url: str, contract: ContractState,
                                                                    forged: dict[str, object]) -> None:
    contract.acks = [forged]
    with pytest.raises(PackageConflictError) as err:
        _put(server_url, _package())
    assert err.value.status == 201 and len(contract.requests) == 1  # not retried: asking again cannot help


@pytest.mark.parametrize("fault", [Fault(500), Fault(503, "0"), Fault(429, "0"), Fault(drop=True)])
def test_transient_failures_are_retried(server_url: str, contract: ContractState, fault: Fault) -> None:
    contract.faults = [fault, fault]
    assert _put(server_url, _package()) is True
    assert len(contract.packages) == 1


def test_retries_are_bounded(server_url: str, contract: ContractState) -> None:
    contract.faults = [Fault(503)] * 10
    with pytest.raises(ServerUnavailableError) as err:
        _put(server_url, _package(), RetryPolicy(attempts=3, initial_s=0.01, max_wait_s=0.02))
    assert err.value.status == 503 and len(contract.requests) == 3


@pytest.mark.parametrize(("status", "error"), [(413, PackageTooLargeError), (401, DeviceAuthError)])
def test_refusals_are_not_retried(server_url: str, contract: ContractState, status: int, error: type) -> None:
    contract.faults = [Fault(status)]
    with pytest.raises(error):
        _put(server_url, _package())
    assert len(contract.requests) == 1


def test_an_error_names_the_servers_request_id(server_url: str, contract: ContractState) -> None:
    contract.faults = [Fault(403, request_id="4f1c0ffee")]
    with pytest.raises(ServerRefusedError, match=r"HTTP 403: .*\[request '4f1c0ffee'\]"):
        _put(server_url, _package())
    contract.faults = [Fault(503, request_id="5e2")] * 10
    with pytest.raises(ServerUnavailableError, match=r"HTTP 503: .*\[request '5e2'\]"):
        _put(server_url, _package(), RetryPolicy(attempts=2, initial_s=0.01, max_wait_s=0.02))


def test_a_read_timeout_is_a_retryable_failure(tmp_path: Path) -> None:
    async def main() -> None:
        async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await asyncio.sleep(5)
            writer.close()

        server = await asyncio.start_server(silent, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        settings = ClientSettings(connect_timeout_s=1, read_timeout_s=0.2, request_timeout_s=1,
                                  retry=RetryPolicy(attempts=2, initial_s=0.01, max_wait_s=0.01))
        async with server, SyncClient(f"http://127.0.0.1:{port}", settings, secret="s") as client:
            with pytest.raises(ServerUnavailableError, match="Timeout"):
                await client.heartbeat("dev-1", {})

    asyncio.run(main())


def _state(exc: BaseException, attempt: int = 1) -> SimpleNamespace:
    return SimpleNamespace(attempt_number=attempt, outcome=SimpleNamespace(exception=lambda: exc))


def test_the_wait_is_at_least_retry_after_and_capped() -> None:
    wait = wait_retry_after(initial_s=0.01, max_wait_s=30)
    told = ServerUnavailableError("busy", 503, retry_after=7)
    assert all(7 <= wait(_state(told)) <= 7.7 for _ in range(50))  # type: ignore[arg-type]
    assert wait_retry_after(0.01, 5)(_state(told)) == 5  # type: ignore[arg-type]
    untold = ServerUnavailableError("reset")
    assert all(0 <= wait(_state(untold, 3)) <= 0.08 for _ in range(50))  # type: ignore[arg-type]


def test_retry_after_is_read_as_seconds_or_http_date() -> None:
    assert parse_retry_after("12") == 12.0
    assert parse_retry_after(None) is None and parse_retry_after("soon") is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # in the past
