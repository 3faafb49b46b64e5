"""The contract is what both sides use: the server's validation agrees with it, and it imports neither side."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from typing import get_args

from contract import package
from contract.bundle import BUNDLE_FILES, REQUIRED_FILES
from server import package_format
from server.registry import bundle_archive


def test_the_servers_package_models_name_the_contracts_kinds_and_format() -> None:
    assert get_args(package_format.RecordKind) == package.KINDS
    assert get_args(package_format.Manifest.model_fields["format"].annotation) == (package.FORMAT,)
    assert package_format.PACKAGE_ID_PATTERN == package.PACKAGE_ID_PATTERN


def test_a_package_the_contract_writes_is_one_the_server_accepts() -> None:
    records = b'{"seq":1,"kind":"log","ts":"2026-01-01T00:00:00+00:00","data":{"message":"hi"}}\n'
    manifest = {"format": package.FORMAT, "package_id": package.package_id("dev-1", 1, 1), "device_id": "dev-1",
                "seq_first": 1, "seq_last": 1, "record_count": 1, "created": "2026-01-01T00:00:00+00:00",
                "files": [{"name": package.RECORDS_NAME, "sha256": hashlib.sha256(records).hexdigest(),
                           "size": len(records), "kind": "records"}]}
    body = package.write_package(manifest, [(package.RECORDS_NAME, records)])
    assert body == package.write_package(manifest, [(package.RECORDS_NAME, records)])  # deterministic bytes
    parsed = package_format.Manifest.model_validate(package.read_manifest(body))
    assert parsed.package_id == package.package_id("dev-1", 1, 1)
    assert package_format.PackageRecord.model_validate_json(records).kind == "log"


def test_the_registry_ships_exactly_the_contracts_bundle_files() -> None:
    assert bundle_archive.BUNDLE_FILES == BUNDLE_FILES == ("bundle.json", *REQUIRED_FILES)


def test_the_contract_imports_neither_side_nor_anything_outside_the_standard_library() -> None:
    code = ("import sys, contract.atomic, contract.bundle, contract.errors, contract.package\n"
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in {'device', 'server', 'simulator', 'numpy',"
            " 'pydantic'})\n"
            "print(','.join(bad))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == ""
