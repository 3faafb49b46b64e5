"""`Idempotency-Key` on the POSTs that create something: a retry with the same key and body gets the first answer.

Keys are kept per operator token for `KEEP`. The key's row is inserted in the creating transaction before
anything is created, so a concurrent duplicate waits on the unique index until the first request commits (then
replays its answer) or rolls back (then creates); a refused request leaves nothing behind and may be retried
under its key. The same key with another request is refused with 422, as the IETF draft on the header advises.

Answers may carry new credentials, so they are stored encrypted (AES-GCM) under a key derived from the
Idempotency-Key, which the database keeps only as a hash.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, TypeVar

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from fastapi import Depends, Header
from pydantic import BaseModel
from sqlalchemy import delete, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from server.api.deps import ClockDep, SessionDep
from server.api.errors import IdempotencyKeyReusedError
from server.db.models import IdempotencyKey
from server.errors import ConflictError
from server.identity import Operator

KEEP = timedelta(hours=24)
KEY_PATTERN = r"^[!-~]{16,255}$"  # printable ASCII, long enough to be unguessable when random (a UUID is)
_PURGE_BATCH = 100
_NONCE_BYTES = 12
Answer = TypeVar("Answer", bound=BaseModel)
IdempotencyKeyHeader = Annotated[str | None, Header(
    alias="Idempotency-Key", pattern=KEY_PATTERN,
    description="a random key (e.g. a UUID) per intended creation: a retry with the same key and body gets the "
                "first answer instead of creating again, for 24 hours; the key with another body is refused (422)")]


def _key_hash(key: str) -> str:
    return hashlib.sha256(b"idempotency-key\0" + key.encode()).hexdigest()


def _cipher(key: str) -> AESGCM:
    derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"tinysphere idempotent answer")
    return AESGCM(derived.derive(key.encode()))


@dataclass(frozen=True)
class Claim:
    """A request's hold on its key: the earlier answer to replay, or the row its own answer goes to."""

    key: str | None = None
    session: Session | None = None
    row_id: int | None = None
    earlier: bytes | None = None  # the first answer's JSON

    def replay(self, model: type[Answer]) -> Answer | None:
        """The first answer under this key, if there was one."""
        return None if self.earlier is None else model.model_validate_json(self.earlier)

    def keep(self, answer: Answer) -> Answer:
        """Store `answer` with the key (committed with whatever the request created) and return it."""
        if self.key is not None and self.session is not None and self.row_id is not None:
            nonce = os.urandom(_NONCE_BYTES)
            sealed = nonce + _cipher(self.key).encrypt(nonce, answer.model_dump_json().encode(), None)
            self.session.execute(update(IdempotencyKey).where(IdempotencyKey.id == self.row_id).values(answer=sealed))
        return answer


@dataclass(frozen=True)
class Idempotency:
    """The request's `Idempotency-Key` (None: every request creates), and where keys are kept."""

    key: str | None = None
    session: Session | None = None
    clock: Callable[[], float] = time.time

    def claim(self, operator: Operator, request: str, body: BaseModel) -> Claim:
        """Hold the key for `request` (method and path) with `body`; a duplicate waits here for the first."""
        if self.key is None or self.session is None:
            return Claim()
        now = datetime.fromtimestamp(self.clock(), UTC)
        key_hash = _key_hash(self.key)
        asked = hashlib.sha256(json.dumps([request, body.model_dump(mode="json")], sort_keys=True).encode())
        row = insert(IdempotencyKey).values(token_id=operator.token_id, key_hash=key_hash,
                                            request_hash=asked.hexdigest(), answer=None, created_at=now,
                                            expires_at=now + KEEP)
        renewed = {name: row.excluded[name] for name in ("request_hash", "answer", "created_at", "expires_at")}
        claimed = self.session.execute(row.on_conflict_do_update(
            index_elements=[IdempotencyKey.token_id, IdempotencyKey.key_hash], set_=renewed,
            where=IdempotencyKey.expires_at <= now,  # an expired key starts over
        ).returning(IdempotencyKey.id)).scalar_one_or_none()
        if claimed is not None:
            self._purge(now)
            return Claim(self.key, self.session, claimed)
        first = self.session.execute(select(IdempotencyKey.request_hash, IdempotencyKey.answer).where(
            IdempotencyKey.token_id == operator.token_id, IdempotencyKey.key_hash == key_hash)).one()
        if first.request_hash != asked.hexdigest():
            raise IdempotencyKeyReusedError("this Idempotency-Key was used for another request; use a new key")
        if first.answer is None:  # not reachable while claim and answer commit together; never replay nothing
            raise ConflictError("a request with this Idempotency-Key is still in progress")
        sealed = bytes(first.answer)
        return Claim(earlier=_cipher(self.key).decrypt(sealed[:_NONCE_BYTES], sealed[_NONCE_BYTES:], None))

    def _purge(self, now: datetime) -> None:
        assert self.session is not None
        expired = (select(IdempotencyKey.id).where(IdempotencyKey.expires_at <= now).limit(_PURGE_BATCH)
                   .with_for_update(skip_locked=True))
        self.session.execute(delete(IdempotencyKey).where(IdempotencyKey.id.in_(expired)))


async def get_idempotency(session: SessionDep, clock: ClockDep, key: IdempotencyKeyHeader = None) -> Idempotency:
    """The request's idempotency key, if it sent one."""
    return Idempotency(key, session, clock)


IdempotencyDep = Annotated[Idempotency, Depends(get_idempotency)]
