"""The operator's registry client turns problem answers into one readable line."""

from __future__ import annotations

import pytest

from server.errors import InputError
from server.registry.client import RegistryClient
from tests.server.registry.fixtures import Repo


def test_refusals_read_as_their_detail(repo: Repo, admin_token: str, viewer_token: str) -> None:
    with pytest.raises(InputError) as invalid:
        RegistryClient(repo.url, admin_token).send("PUT", "/api/v1/registry/root", {"targets": "{}"})
    assert str(invalid.value) == "PUT /api/v1/registry/root: HTTP 422: body.metadata: Field required"
    with pytest.raises(InputError) as refused:
        RegistryClient(repo.url, viewer_token).send("PUT", "/api/v1/registry/root", {"metadata": "{}"})
    assert str(refused.value) == "PUT /api/v1/registry/root: HTTP 403: needs role admin"
