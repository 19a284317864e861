"""Sends queued notices to patrons (see holdshelf.outbox for leases and retries).

The contact is unsealed only to send. It is erased in the transaction that records the outcome:
accepted by the mail server or gateway, failed for good, or dropped because the hold ended.

Delivery is at least once, and cannot be better: a mail server that took the message and whose
"250" never arrived (a dropped connection, a timeout after the final dot) is indistinguishable
from one that never took it, so the notice is sent again. Every attempt at one notice carries
the same Message-ID, so the copies are one message to whatever deduplicates by it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import logging
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, select, update

from holdshelf.domain.codes import ShelfCode
from holdshelf.domain.contacts import clean_email, clean_phone
from holdshelf.domain.holds import HoldStatus
from holdshelf.domain.links import make_token
from holdshelf.errors import ConfigError, InvalidInput
from holdshelf.notices import (
    SMS_LIMIT,
    MessageTooLong,
    NoticeContent,
    email_message,
    longest_sms,
    sender_domain,
    sms_email,
    sms_text,
)
from holdshelf.notifiers import DeliveryError, send_mail, send_sms_over_http
from holdshelf.outbox import DELIVERED, OutboxWorker, Outcome
from holdshelf.sealing import Sealer
from holdshelf.settings import Settings
from holdshelf.storage.models import Delivery, Hold, Notice
from holdshelf.storage.wakeup import mark_queued

log = logging.getLogger(__name__)


def opt_out_link(settings: Settings, pseudonym: str, today: dt.date) -> str:
    valid_until = today + dt.timedelta(days=settings.notices.link_days)
    token = make_token(pseudonym, settings.secret_key.encode("utf-8"), valid_until)
    return f"{settings.web.public_url}/p/{token}"


@dataclass(frozen=True)
class NoticeView:
    """A notice as staff see it: never the address or number."""

    id: int
    branch: str
    code: ShelfCode
    channel: str
    status: str
    attempts: int
    last_error: str | None

    @property
    def state(self) -> str:
        """For the desk: waiting, retrying (failed for now, contact still held), sent, failed
        (for good: the contact is erased), dropped (the hold ended first)."""
        if self.status == Delivery.QUEUED:
            return "retrying" if self.last_error else "waiting"
        return self.status

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "branch": self.branch,
            "code": self.code.display,
            "channel": self.channel,
            "status": self.status,
            "attempts": self.attempts,
            "last_error": self.last_error,
        }


def check_text_messages_fit(settings: Settings) -> None:
    """Refuse a configuration whose text messages cannot fit in one message (a long
    web.public_url with long codes), before any notice waits for ever."""
    if not settings.sms.enabled:
        return
    link = opt_out_link(settings, "0" * 32, dt.date(2026, 1, 1))  # every link is this long
    # ~30 ms each: once per language and code length, not per branch (consortia have dozens)
    kinds = {(b.language, b.code_length): b for b in settings.branches.values()}
    for (language, code_length), branch in kinds.items():
        length = longest_sms(language, code_length, link)
        if length > SMS_LIMIT:
            raise ConfigError(
                f"text messages of branch {branch.id} could run to {length} characters, "
                f"over the {SMS_LIMIT} of one message: shorten web.public_url by "
                f"{length - SMS_LIMIT} or more"
            )


def notice_message_id(settings: Settings, notice: Notice) -> str:
    """The notice's Message-ID, the same on every attempt: an HMAC of the row under the
    instance's key (it names no patron, and one notice's cannot be guessed from another's)."""
    key = settings.secret_key.encode("utf-8")
    # the naive UTC form the seed has always had, so a notice queued before an upgrade keeps it
    created = notice.created_at.astimezone(dt.UTC).replace(tzinfo=None)
    seed = f"notice:{notice.id}:{created.isoformat()}".encode()
    digest = hmac.new(key, seed, hashlib.sha256).hexdigest()[:32]
    return f"<{digest}@{sender_domain(settings.mail.sender)}>"


class NoticeWorker(OutboxWorker):
    model = Notice
    noun = "notice"
    # Accepted, failed for good, or no longer wanted: forget the contact.
    erased_when_finished = ("sealed",)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        check_text_messages_fit(self.settings)

    def route(self, row: Notice) -> str:
        return row.channel

    def skip_routes(self, query: Select[Any], routes: set[str]) -> Select[Any]:
        return query.where(Notice.channel.not_in(routes))

    def deliver(self, row: Notice) -> Outcome:
        settings = self.settings
        try:
            sealed = Sealer(settings.data_key).unseal(row.sealed or "")
            content = self._content(row, sealed.get("title"))
            if content is None:
                return Outcome("the hold ended before it was sent", permanent=True)
            # Contacts are checked again here: a row queued by an older, laxer version must end
            # plainly, not fail inside the mail library with the address in its message.
            if row.channel == "email":
                self._require(settings.mail.enabled, "email")
                to = clean_email(sealed["to"])
                message_id = notice_message_id(settings, row)
                send_mail(
                    settings.mail, email_message(content, settings.mail.sender, to, message_id)
                )
            elif settings.sms.gateway == "http":
                send_sms_over_http(settings.sms, clean_phone(sealed["to"]), sms_text(content))
            else:
                self._require(settings.sms.gateway == "email", "sms")
                to = clean_phone(sealed["to"])
                domain = settings.sms.email_domain
                message_id = notice_message_id(settings, row)
                message = sms_email(content, settings.mail.sender, to, domain, message_id)
                send_mail(settings.mail, message)
        except DeliveryError as exc:
            log.warning("notice %s not sent: %s", row.id, exc)
            return Outcome(str(exc), permanent=exc.permanent)
        except MessageTooLong as exc:  # see check_text_messages_fit
            return Outcome(str(exc), permanent=True)
        except InvalidInput:
            return Outcome(f"the {row.channel} contact cannot be used", permanent=True)
        except ConfigError as exc:  # fix the configuration, then it goes
            return Outcome(str(exc))
        log.info("notice %s accepted (%s)", row.id, row.channel)
        return DELIVERED

    @staticmethod
    def _require(enabled: bool, channel: str) -> None:
        if not enabled:
            raise ConfigError(f"{channel} notices are no longer set up in the configuration")

    def _content(self, row: Notice, title: str | None) -> NoticeContent | None:
        with self._reads() as session:
            hold = session.scalar(
                select(Hold).where(
                    Hold.branch == row.branch,
                    Hold.code == row.code,
                    Hold.status == HoldStatus.READY.value,
                )
            )
            if hold is None or hold.patron is None:
                return None
            branch = self.settings.branches.get(row.branch)
            return NoticeContent(
                branch_name=branch.name if branch else row.branch,
                code=ShelfCode(hold.code),
                pickup_by=hold.pickup_by,
                desk=hold.mode == "desk",
                link=opt_out_link(self.settings, hold.patron, self._clock.today()),
                language=self.settings.language_of(row.branch),
                title=title,
            )

    def of_branch(
        self, branch_id: str, codes: Collection[str] | None = None
    ) -> dict[str, list[NoticeView]]:
        """The notices still kept for a branch's holds (those with these compact ``codes``
        only, if given), by compact code (sent and failed ones are kept a day)."""
        found: dict[str, list[NoticeView]] = {}
        with self._reads() as session:
            query = select(Notice).where(Notice.branch == branch_id).order_by(Notice.id)
            if codes is not None:
                query = query.where(Notice.code.in_(list(codes)))
            for notice in session.scalars(query):
                found.setdefault(notice.code, []).append(_view(notice))
        return found

    def resend(self, branch_id: str, code: ShelfCode) -> int:
        """Try a hold's failing notices again now instead of at their next retry; only
        notices still queued hold their contact. Returns how many."""
        now = self._clock()
        with self._sessions.begin() as session:
            mark_queued(session)  # due now: a worker of another app server takes them up too
            return session.execute(
                update(Notice)
                .where(
                    Notice.branch == branch_id,
                    Notice.code == code.compact,
                    Notice.status == Delivery.QUEUED,
                    Notice.sealed.is_not(None),
                )
                .values(next_attempt_at=now)
            ).rowcount

    def notices(self, *, include_finished: bool = False) -> list[NoticeView]:
        query = select(Notice).order_by(Notice.id)
        if not include_finished:
            query = query.where(Notice.status == Delivery.QUEUED)
        with self._reads() as session:
            return [_view(n) for n in session.scalars(query)]


def _view(notice: Notice) -> NoticeView:
    return NoticeView(
        notice.id,
        notice.branch,
        ShelfCode(notice.code),
        notice.channel,
        notice.status,
        notice.attempts,
        notice.last_error,
    )
