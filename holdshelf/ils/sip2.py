"""The SIP2 connector: asks the ILS's SIP server whose hold a scanned item fills.

Lookups: ``checkin`` sends 09 and reads the 3M extension fields Koha and Evergreen add to the
10 answer (CY hold patron's card, CT pickup library, CV alert type, CM pickup date); checking
in is what traps the hold. ``item-information`` sends 17 and reads Evergreen's 18 answer
(circulation status 08 on the hold shelf / 10 in transit, CY, CT, CM) without changing the ILS.
The sync's question (``hold_state``) always sends 17, whatever the lookup: it must never check
an item in, and 17 changes nothing (see ``item_state`` for what each status means).

Connections: one per branch account (its own SIP login), opened and logged in (93) on first
use and kept. Its lock makes calls on it one at a time, since SIP2 answers carry no request
id; other accounts' calls go on in parallel. Any failure closes the connection; the next call
logs in again. ``timeout`` bounds a whole call: waiting for the lock, connecting, logging in,
the request and any resend.

Retry: when a connection that had already answered turns out closed (the ILS drops idle SIP
clients) the call is made once more on a new connection. That may repeat a checkin whose
answer was lost, which is safe because both servers answer a repeated checkin alike: Koha's
AddReturn (C4/Circulation.pm) runs CheckReserves again, finds the hold it trapped and answers
CV 01/02 with CY again; Evergreen's checkin of a copy on the holds shelf is NO_CHANGE with that
hold (Circ/Circulate.pm), answered the same way; a 17 only reads, so asking again is safe.
A fresh connection that fails, a timeout or a refusal is not retried: the clerk hears at once
and can scan again (the sync asks again on its next round).

Privacy: frames are parsed where they arrive and only the fields named in ``_KEEP`` survive
(sip2_wire drops DA names, BF phones, titles); no frame is logged or put into an exception,
which are raised ``from None``; the card is returned, never logged. ``hold_state`` does not
even return it: it hands CY to the caller's ``is_patron`` and answers only a HoldState.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import socket
import ssl
import threading
import time
from typing import NoReturn

from holdshelf.ils.answers import (
    HoldState,
    IlsAccount,
    IlsUnavailable,
    InTransit,
    IsPatron,
    NoHold,
    TrapAnswer,
    Trapped,
)
from holdshelf.ils.sip2_wire import (
    Answer,
    FrameError,
    field_text,
    read_answer,
    request,
    resend_request,
    sip_date,
    sip_datetime,
)

log = logging.getLogger(__name__)

LOOKUPS = ("checkin", "item-information")
_RESENDS = 2  # 96/97 rounds in one call before the answer counts as unreadable
_MAX_FRAME = 65536  # far above any real answer: a peer streaming without CR is not an ACS
_KEEP = {  # the only fields read from each answer; everything else is dropped unread
    "94": frozenset(),
    "96": frozenset(),
    "98": frozenset({"BX"}),
    "10": frozenset({"AB", "AF", "CM", "CT", "CV", "CY"}),
    "18": frozenset({"AB", "AF", "CF", "CM", "CT", "CY"}),
}
_BX_ITEM_INFORMATION = 10  # position of 17 in the 98 answer's supported-messages field


class _Dropped(Exception):
    """The ILS closed the connection (EOF or reset), as opposed to failing to answer."""


class _Link:
    """One SIP2 connection for one branch account."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.sock: socket.socket | None = None
        self.buffer = b""
        self.sequence = 0

    def next_sequence(self) -> int:
        self.sequence = (self.sequence + 1) % 10
        return self.sequence

    def close(self) -> None:
        if self.sock is not None:
            with contextlib.suppress(OSError):
                self.sock.close()
        self.sock, self.buffer = None, b""


class Sip2Connector:
    """SIP2 over TCP (or TLS) to one ILS; thread-safe, see the module's notes."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        institution: str,
        timeout: float = 3.0,
        tls: bool = False,
        ca_file: str | os.PathLike[str] | None = None,
        lookup: str = "checkin",
    ) -> None:
        if lookup not in LOOKUPS:
            raise ValueError(f"lookup must be one of {', '.join(LOOKUPS)}")
        self.host, self.port, self.institution = host, port, institution
        self.timeout, self.lookup = timeout, lookup
        self._tls = ssl.create_default_context(cafile=ca_file or None) if tls else None
        self._links: dict[IlsAccount, _Link] = {}
        self._links_lock = threading.Lock()

    # -- the Connector protocol ---------------------------------------------------------------

    def trapped_hold(self, account: IlsAccount, item_barcode: str) -> TrapAnswer:
        if self.lookup == "checkin":
            # 09: no block N, transaction and return date now; AP tells the ILS where the
            # item is (Koha and Evergreen check it in there and choose CV 01 or 02 by it).
            now = sip_datetime(dt.datetime.now())
            fields = (("AP", account.location), ("AO", self.institution), ("AB", item_barcode))
            body = f"09N{now}{now}" + self._fields(*fields, ("AC", ""))  # AC: the login is it
            reply, read = "10", checkin_answer
        else:
            body, reply, read = self._item_information(item_barcode), "18", item_answer
        answer = self._call(account, body, reply)
        try:
            return read(answer, account, item_barcode)
        except IlsUnavailable as exc:
            self._fail(account, body, exc)

    def hold_state(self, account: IlsAccount, item_barcode: str, is_patron: IsPatron) -> HoldState:
        """17 Item Information, whatever ``lookup`` is: a sync round must not check items in
        (a 09 would trap, or re-trap, holds on them). ``is_patron`` is asked about CY after
        the connection is released; the card goes nowhere else."""
        body = self._item_information(item_barcode)
        answer = self._call(account, body, "18")
        try:
            return item_state(answer, item_barcode, is_patron)
        except IlsUnavailable as exc:
            self._fail(account, body, exc)

    def _item_information(self, item_barcode: str) -> str:
        """17: transaction date now; no terminal password (AC): the login is it."""
        now = sip_datetime(dt.datetime.now())
        return f"17{now}" + self._fields(("AO", self.institution), ("AB", item_barcode), ("AC", ""))

    def check(self, account: IlsAccount) -> str:
        self._forget(account)  # a check logs in afresh: the login is part of what it checks
        answer = self._call(account, "9900402.00", "98")  # status 0, print width 040, 2.00
        return self._status_line(account, answer)

    def close(self) -> None:
        with self._links_lock:
            links = list(self._links.values())
            self._links.clear()
        for link in links:
            with link.lock:
                link.close()

    # -- one call ----------------------------------------------------------------------------

    def _call(self, account: IlsAccount, body: str, expect: str) -> Answer:
        started = time.monotonic()
        deadline = started + self.timeout
        link = self._link(account)
        if not link.lock.acquire(timeout=self.timeout):  # the call before is still waiting
            self._fail(account, body, self._timed_out())
        try:
            answer = self._call_on(link, account, body, expect, deadline)
        except IlsUnavailable as exc:
            link.close()
            self._fail(account, body, exc)
        finally:
            link.lock.release()
        log.debug(
            "SIP2 %s for branch %s answered in %.0f ms",
            body[:2],
            account.branch_id,
            (time.monotonic() - started) * 1000,
        )
        return answer

    @staticmethod
    def _fail(account: IlsAccount, body: str, exc: IlsUnavailable) -> NoReturn:
        log.warning("SIP2 %s for branch %s failed: %s", body[:2], account.branch_id, exc)
        raise exc

    def _call_on(
        self, link: _Link, account: IlsAccount, body: str, expect: str, deadline: float
    ) -> Answer:
        reused = link.sock is not None
        try:
            return self._attempt(link, account, body, expect, deadline)
        except _Dropped:
            link.close()
            if not reused:
                raise IlsUnavailable("the ILS closed the SIP connection") from None
        log.info(
            "SIP2 connection for branch %s was closed by the ILS; logging in again",
            account.branch_id,
        )
        try:
            return self._attempt(link, account, body, expect, deadline)
        except _Dropped:
            raise IlsUnavailable("the ILS closed the SIP connection") from None

    def _attempt(
        self, link: _Link, account: IlsAccount, body: str, expect: str, deadline: float
    ) -> Answer:
        if link.sock is None:
            self._log_in(link, account, deadline)
        return self._exchange(link, body, expect, deadline)

    def _log_in(self, link: _Link, account: IlsAccount, deadline: float) -> None:
        if not account.login:
            raise IlsUnavailable(f"branch {account.branch_id} has no SIP login (ils_login)")
        link.sock = self._connect(deadline)
        body = "9300" + self._fields(  # 0 0: login and password sent as they are
            ("CN", account.login), ("CO", account.password or ""), ("CP", account.location)
        )
        if self._exchange(link, body, "94", deadline).fixed != "1":
            raise IlsUnavailable(f"the ILS refused the SIP login {account.login}")
        log.info("SIP2 login for branch %s accepted", account.branch_id)

    @staticmethod
    def _fields(*pairs: tuple[str, str]) -> str:
        try:
            return "".join(field_text(field_id, value) for field_id, value in pairs)
        except ValueError as exc:
            raise IlsUnavailable(f"cannot be sent over SIP2: {exc}") from None

    # -- the exchange of one request and its answer -----------------------------------------

    def _exchange(self, link: _Link, body: str, expect: str, deadline: float) -> Answer:
        sequence = link.next_sequence()
        frame = request(body, sequence)
        self._send(link, frame, deadline)
        for round_ in range(_RESENDS + 1):
            try:
                answer = read_answer(self._frame(link, deadline), _KEEP[expect])
            except FrameError as exc:  # damaged on the way: 97 asks for the answer again
                if round_ == _RESENDS:
                    raise IlsUnavailable(str(exc)) from None
                self._send(link, resend_request(), deadline)
                continue
            if answer.command != "96":
                return self._matching(answer, expect, sequence)
            if round_ == _RESENDS:  # 96: the ACS could not read ours, so it goes again
                raise IlsUnavailable("the ILS could not read the SIP2 request")
            self._send(link, frame, deadline)
        raise AssertionError("unreachable")

    @staticmethod
    def _matching(answer: Answer, expect: str, sequence: int) -> Answer:
        # Koha resends after a 97 without AY (MsgType.pm handle_request_acs_resend), so a
        # missing sequence number is accepted; a different one is an answer to another request.
        if answer.command != expect or answer.sequence not in (None, sequence):
            raise IlsUnavailable("the ILS answered another SIP2 request than the one sent")
        return answer

    # -- the socket --------------------------------------------------------------------------

    def _connect(self, deadline: float) -> socket.socket:
        where = f"{self.host}:{self.port}"
        try:
            sock = socket.create_connection((self.host, self.port), self._remaining(deadline))
        except TimeoutError:
            raise self._timed_out() from None
        except socket.gaierror:
            raise IlsUnavailable(f"the ILS host {self.host} was not found") from None
        except OSError as exc:
            reason = f"the ILS at {where} could not be reached ({_reason(exc)})"
            raise IlsUnavailable(reason) from None
        return self._secure(sock) if self._tls else sock

    def _secure(self, sock: socket.socket) -> socket.socket:
        assert self._tls is not None
        try:
            return self._tls.wrap_socket(sock, server_hostname=self.host)
        except TimeoutError:
            sock.close()
            raise self._timed_out() from None
        except ssl.SSLCertVerificationError:
            sock.close()
            raise IlsUnavailable(
                "the ILS's TLS certificate is not trusted (ca_file names a private CA)"
            ) from None
        except OSError as exc:  # ssl.SSLError is one
            sock.close()
            raise IlsUnavailable(f"TLS with the ILS failed ({_reason(exc)})") from None

    def _frame(self, link: _Link, deadline: float) -> bytes:
        while b"\r" not in link.buffer:
            if len(link.buffer) > _MAX_FRAME:
                raise IlsUnavailable("the ILS sent an overlong SIP2 message")
            link.buffer += self._recv(link, deadline)
        frame, _, link.buffer = link.buffer.partition(b"\r")
        return frame.lstrip(b"\n")  # Koha ends frames with CR LF unless told CR (Sip.pm)

    def _recv(self, link: _Link, deadline: float) -> bytes:
        assert link.sock is not None
        link.sock.settimeout(self._remaining(deadline))
        try:
            chunk = link.sock.recv(4096)
        except TimeoutError:
            raise self._timed_out() from None
        except (ConnectionError, ssl.SSLEOFError, ssl.SSLZeroReturnError):
            raise _Dropped from None
        except OSError as exc:
            raise _broken(exc) from None
        if not chunk:
            raise _Dropped
        return chunk

    def _send(self, link: _Link, frame: bytes, deadline: float) -> None:
        assert link.sock is not None
        link.sock.settimeout(self._remaining(deadline))
        try:
            link.sock.sendall(frame)
        except TimeoutError:
            raise self._timed_out() from None
        except (ConnectionError, ssl.SSLEOFError, ssl.SSLZeroReturnError):
            raise _Dropped from None
        except OSError as exc:
            raise _broken(exc) from None

    def _remaining(self, deadline: float) -> float:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise self._timed_out()
        return remaining

    def _timed_out(self) -> IlsUnavailable:
        return IlsUnavailable(f"the ILS did not answer within {self.timeout:g} s")

    # -- connections -------------------------------------------------------------------------

    def _link(self, account: IlsAccount) -> _Link:
        with self._links_lock:
            return self._links.setdefault(account, _Link())

    def _forget(self, account: IlsAccount) -> None:
        with self._links_lock:
            link = self._links.pop(account, None)
        if link is not None:
            with link.lock:
                link.close()

    def _status_line(self, account: IlsAccount, answer: Answer) -> str:
        """98 ACS status: online (first fixed field), checkin ok (second), BX position 10."""
        scheme = "SIP2 over TLS" if self._tls else "SIP2"
        prefix = f"{scheme} {self.host}:{self.port} as {account.login}"
        if answer.fixed[0] != "Y":
            raise IlsUnavailable(f"{prefix}: the ILS says it is offline (ACS status)")
        if self.lookup == "checkin":
            if answer.fixed[1] != "Y":
                raise IlsUnavailable(f"{prefix}: online, but the ACS does not allow checkin")
            return f"{prefix}: online (ACS status: checkin ok)"
        supported = answer.fields.get("BX", "")
        if len(supported) > _BX_ITEM_INFORMATION and supported[_BX_ITEM_INFORMATION] != "Y":
            raise IlsUnavailable(f"{prefix}: online, but the ACS does not offer item information")
        return f"{prefix}: online (ACS status: item information ok)"


# -- what the answers mean ------------------------------------------------------------------


def checkin_answer(answer: Answer, account: IlsAccount, item_barcode: str) -> TrapAnswer:
    """A 10 Checkin response. Koha (C4/SIP/Sip/MsgType.pm handle_checkin, values from
    ILS/Transaction/Checkin.pm do_checkin) and Evergreen (OpenILS/Application/SIP2.pm
    handle_checkin, values from SIP2/Checkin.pm handle_hold) both send CY = the hold patron's
    card, CT = the hold's pickup library and CV 01 when that is the checkin library (AP),
    02 when it is another. Without a hold there is no CY (CV 04 "send to other branch",
    99 refused): nothing to trap."""
    fields = _for_item(answer, item_barcode)
    message = fields.get("AF") or None
    card = fields.get("CY")
    if not card:
        return NoHold(message)
    alert = fields.get("CV")
    return _hold(
        account,
        card,
        fields.get("CT"),
        here=alert == "01",
        transit=alert == "02",
        pickup_by=sip_date(fields.get("CM")),
        message=message,
    )


def item_answer(answer: Answer, account: IlsAccount, item_barcode: str) -> TrapAnswer:
    """An 18 Item Information response as Evergreen sends it (OpenILS/Application/SIP2.pm
    handle_item_info, SIP2/Item.pm): circulation status 08 on the holds shelf with CY the
    hold patron's card, CT the pickup library and CM its shelf expiry (SIP date); 10 in
    transit with CT the destination. Evergreen sends CT (the item's circ library) for every
    item, so CT alone means nothing. Koha's 18 sends 08 and CM but no CY."""
    status = _circulation_status(answer)
    fields = _for_item(answer, item_barcode)
    message = fields.get("AF") or None
    if status == "10":
        return _hold(account, "", fields.get("CT"), here=False, transit=True, message=message)
    if status != "08":
        return NoHold(message)
    card = fields.get("CY")
    if not card:
        raise IlsUnavailable(
            "the ILS says the item waits on a hold shelf but not for whom (no CY); "
            'use lookup = "checkin"'
        )
    return _hold(
        account,
        card,
        fields.get("CT"),
        here=True,
        transit=False,
        pickup_by=sip_date(fields.get("CM")),
        message=message,
    )


_CHARGED = frozenset({"04", "05"})  # charged; charged, not to be recalled yet
_SPEC_STATUSES = frozenset(f"{code:02d}" for code in range(1, 14))  # SIP2 2.00: 01..13


def item_state(answer: Answer, item_barcode: str, is_patron: IsPatron) -> HoldState:
    """What an 18 Item Information response says of a hold Holdshelf has on the item.

    The circulation status (SIP2 2.00) as Koha (C4/SIP/Sip/MsgType.pm handle_item_information,
    status from C4/SIP/ILS/Item.pm sip_circulation_status) and Evergreen (OpenILS/Application/
    SIP2.pm handle_item_info, status and fields from SIP2/Item.pm get_item_details and
    circulation_status) send it:

    - 08 waiting on hold shelf: with CY (Evergreen: the card of the captured, open hold's
      patron) WAITING if ``is_patron`` recognises the card, else ENDED (trapped for another
      patron). Without CY and with CF 0 ENDED: Evergreen names no hold and counts none when
      the hold was cancelled while its copy sits on the shelf (Circ/Holds.pm cancel_hold
      leaves the copy status 08 until it is checked in). Without CY otherwise WAITING, since
      Koha's 18 never sends CY (08 means a W/P/T hold is attached, CF counts the queue):
      the patron cannot be verified, only that the item still waits for a hold.
    - 04 charged, 05 charged (not to be recalled): PICKED_UP. Both servers answer 04 for a
      checked-out item (Koha: a checkout, unless a transfer, a return claim or a lost flag
      comes first; Evergreen: copy status Checked out), with AH the due date.
    - 01 other: UNKNOWN. Both answer an item they do not know with 01 01 01, AB echoed and an
      empty AJ; Koha also says 01 for a damaged item, Evergreen for any copy status it does
      not map (damaged, discard, long overdue...). A status outside 01..13 is also UNKNOWN:
      a server's own code is not the ILS saying the hold ended.
    - anything else ENDED: 03 available (back on the shelf: Koha after a cancelled or expired
      waiting hold without a transfer), 02 on order, 06 in process, 07 recalled, 09 waiting
      to be re-shelved (Koha: CART), 10 in transit (Koha: any transfer, as after the
      cancellation or expiry of a waiting hold elsewhere; Evergreen: also a transit to fill
      a hold), 11 claimed returned, 12 lost, 13 missing.

    EXPIRED never: an 18 does not tell an expired hold from a cancelled one (Koha's
    CancelExpiredReserves cancels it, Evergreen's clear-shelf run takes it off the shelf);
    ENDED covers both. An answer for another item raises IlsUnavailable."""
    status = _circulation_status(answer)
    fields = _for_item(answer, item_barcode)
    if status == "08":
        card = fields.get("CY")
        if card:
            return HoldState.WAITING if is_patron(card) else HoldState.ENDED
        if _count(fields.get("CF")) == 0:  # Evergreen: no open hold on the copy any more
            return HoldState.ENDED
        return HoldState.WAITING  # Koha: no CY, so the patron cannot be verified
    if status in _CHARGED:
        return HoldState.PICKED_UP
    if status == "01" or status not in _SPEC_STATUSES:
        return HoldState.UNKNOWN
    return HoldState.ENDED


def _circulation_status(answer: Answer) -> str:
    status = answer.fixed[:2]
    if not status.isdigit():
        raise IlsUnavailable("the ILS answered with a malformed SIP2 item status")
    return status


def _count(value: str | None) -> int | None:
    value = (value or "").strip()
    return int(value) if value.isdigit() else None


def _hold(
    account: IlsAccount,
    card: str,
    pickup: str | None,
    *,
    here: bool,
    transit: bool,
    pickup_by: dt.date | None = None,
    message: str | None = None,
) -> TrapAnswer:
    """The ILS's pickup library (CT) decides: a hold to be picked up elsewhere is sent there
    even when the alert says "here" (a mismatch Koha only warns about: 'SIP hold mismatch')."""
    elsewhere = bool(pickup) and not _same_code(pickup, account.location)
    if transit or elsewhere:
        if not pickup:
            raise IlsUnavailable("the ILS sent the item in transit without saying where (CT)")
        return InTransit(pickup, message)
    if here or pickup:
        return Trapped(card, pickup or account.location, pickup_by, message)
    raise IlsUnavailable("the ILS named a hold on the item but not its pickup library (CT)")


def _for_item(answer: Answer, item_barcode: str) -> dict[str, str]:
    echoed = answer.fields.get("AB")
    if echoed is not None and not _same_code(echoed, item_barcode):
        raise IlsUnavailable("the ILS answered for another item than the one scanned")
    return answer.fields


def _same_code(a: str, b: str) -> bool:
    return a.strip().casefold() == b.strip().casefold()


def _broken(exc: OSError) -> IlsUnavailable:
    return IlsUnavailable(f"the SIP connection to the ILS failed ({_reason(exc)})")


def _reason(exc: OSError) -> str:
    return exc.strerror or type(exc).__name__
