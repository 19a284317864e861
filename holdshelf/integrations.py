"""ILS integration: named API tokens limited to branches, and Idempotency-Key bookkeeping.

Knows nothing of Flask. A token is shown once when created; only its hash is kept.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from holdshelf.clock import Clock
from holdshelf.domain.inputs import clean_barcode
from holdshelf.errors import Conflict, HoldshelfError, InvalidInput, NotFound
from holdshelf.settings import Settings
from holdshelf.storage.database import read_sessions
from holdshelf.storage.models import ApiToken, IdempotencyRecord

# What a token may do (ApiToken.scope): the holds API, or one branch's slip jobs and nothing else.
API, PRINT_AGENT = "api", "print-agent"
TOKEN_PREFIX = "hs_"  # noqa: S105 (a prefix that makes leaked tokens recognisable)
IDEMPOTENCY_KEPT = dt.timedelta(hours=24)
IDEMPOTENCY_STALE = dt.timedelta(minutes=2)  # a first request that died: its key is free again
# How long a process trusts a token it has checked before it reads the database again: an ILS
# sends many requests a second, each paid a transaction for the same row. A token revoked in
# this process stops at once; revoked by another (the CLI, another app server), within this.
TOKEN_RECHECK_SECONDS = 5.0
TOKENS_REMEMBERED = 256  # valid tokens only: a flood of made-up ones fills nothing


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _branches(row: ApiToken) -> list[str]:
    """The branches a token is limited to, as stored (comma-separated; none: every branch)."""
    return [branch for branch in row.branches.split(",") if branch]


@dataclass(frozen=True)
class ApiClient:
    id: int
    name: str
    branches: frozenset[str]  # empty: every branch
    # API (the holds API) or PRINT_AGENT (holdshelf.agents). No default, on purpose: a client
    # made without its token's scope must fail loudly, never pass an agent's token as the API's.
    scope: str

    def may_use(self, branch: str) -> bool:
        return not self.branches or branch in self.branches


@dataclass(frozen=True)
class TokenView:
    name: str
    branches: tuple[str, ...]
    created_at: dt.datetime
    revoked: bool
    scope: str


@dataclass(frozen=True)
class Replay:
    status: int
    body: Any


class KeyReused(HoldshelfError):
    """The Idempotency-Key came with a different request."""


class KeyInUse(HoldshelfError):
    """The first request with this Idempotency-Key is still running."""


class Integrations:
    def __init__(
        self,
        settings: Settings,
        sessions: sessionmaker[Session],
        clock: Clock,
    ) -> None:
        self.settings = settings
        self._sessions = sessions
        self._reads = read_sessions(sessions)  # lookups and lists: no write lock on SQLite
        self._clock = clock
        self._checked: dict[str, tuple[float, ApiClient]] = {}  # token hash: when, whose

    # -- tokens -------------------------------------------------------------------------------

    def create_token(self, name: str, branches: list[str], scope: str = API) -> str:
        name = clean_barcode(name, "token name")
        ids = sorted({self.settings.branch(b).id for b in branches})
        if scope == PRINT_AGENT and len(ids) != 1:
            raise InvalidInput("a print agent token is for one branch: give exactly one --branch")
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        row = ApiToken(
            name=name,
            token_hash=_hash(token),
            branches=",".join(ids),
            created_at=self._clock(),
            scope=scope,
        )
        try:
            with self._sessions.begin() as session:
                session.add(row)
        except IntegrityError:
            raise Conflict(f"a token named {name!r} exists already") from None
        return token

    def tokens(self) -> list[TokenView]:
        with self._reads() as session:
            rows = session.scalars(select(ApiToken).order_by(ApiToken.name))
            return [
                TokenView(
                    r.name, tuple(_branches(r)), r.created_at, r.revoked_at is not None, r.scope
                )
                for r in rows
            ]

    def revoke(self, name: str) -> None:
        with self._sessions.begin() as session:
            row = session.scalar(select(ApiToken).where(ApiToken.name == name))
            if row is None or row.revoked_at is not None:
                raise NotFound(f"no active token named {name!r}")
            row.revoked_at = self._clock()
        self._checked.clear()

    def authenticate(self, token: str | None) -> ApiClient | None:
        """The client a token belongs to, or None for an unknown or revoked token. A valid
        token is read again after TOKEN_RECHECK_SECONDS (see there)."""
        if not token or not token.startswith(TOKEN_PREFIX) or len(token) > 200:
            return None
        digest = _hash(token)
        now = time.monotonic()
        checked = self._checked.get(digest)
        if checked is not None and now - checked[0] < TOKEN_RECHECK_SECONDS:
            return checked[1]
        with self._reads() as session:
            row = session.scalar(select(ApiToken).where(ApiToken.token_hash == digest))
        if row is None or row.revoked_at is not None:
            self._checked.pop(digest, None)
            return None
        client = ApiClient(row.id, row.name, frozenset(_branches(row)), row.scope)
        if len(self._checked) >= TOKENS_REMEMBERED:
            self._checked.clear()
        self._checked[digest] = (now, client)
        return client

    # -- idempotency --------------------------------------------------------------------------

    def fingerprint(self, body: bytes) -> str:
        key = self.settings.pseudonym_key.encode("utf-8")
        return hmac.new(key, b"idempotency\0" + body, hashlib.sha256).hexdigest()

    def begin(self, client: ApiClient, key: str, fingerprint: str) -> Replay | None:
        """Claim ``key`` for this request; a Replay if it was answered before."""
        if not key or len(key) > 255 or not key.isprintable():
            raise InvalidInput("Idempotency-Key must be 1..255 printable characters")
        now = self._clock()
        try:
            with self._sessions.begin() as session:
                session.add(
                    IdempotencyRecord(
                        token_id=client.id, key=key, fingerprint=fingerprint, created_at=now
                    )
                )
            return None
        except IntegrityError:
            pass
        with self._sessions.begin() as session:
            record = session.get(IdempotencyRecord, (client.id, key))
            if record is None:  # purged meanwhile: claim it again
                return self.begin(client, key, fingerprint)
            if not hmac.compare_digest(record.fingerprint, fingerprint):
                raise KeyReused("this Idempotency-Key was used with a different request")
            if record.status is None:
                if now - record.created_at < IDEMPOTENCY_STALE:
                    raise KeyInUse("a request with this Idempotency-Key is still running")
                record.created_at = now  # its first request died: this one takes over
                return None
            return Replay(record.status, json.loads(record.response or "null"))

    def complete(self, client: ApiClient, key: str, status: int, body: Any) -> None:
        with self._sessions.begin() as session:
            record = session.get(IdempotencyRecord, (client.id, key))
            if record is not None:
                record.status, record.response = status, json.dumps(body)

    def abandon(self, client: ApiClient, key: str) -> None:
        """The request failed: the same key may be retried."""
        with self._sessions.begin() as session:
            session.execute(
                delete(IdempotencyRecord).where(
                    IdempotencyRecord.token_id == client.id, IdempotencyRecord.key == key
                )
            )

    def purge(self) -> int:
        cutoff = self._clock() - IDEMPOTENCY_KEPT
        with self._sessions.begin() as session:
            return session.execute(
                delete(IdempotencyRecord).where(IdempotencyRecord.created_at < cutoff)
            ).rowcount
