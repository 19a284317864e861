"""Notices over real SMTP (aiosmtpd on loopback) and a real HTTP SMS gateway, with faults.

A contact is stored only encrypted and only until the server accepts the message (or it fails
for good, or the hold ends); each notice is sent once; no card number or title goes out.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from holdshelf.bootstrap import Holdshelf
from holdshelf.errors import InvalidInput
from holdshelf.service import HoldService
from holdshelf.storage.models import Notice
from holdshelf.worker import Worker
from tests.conftest import Clock, assert_no_patron_data, raw_database_bytes
from tests.helpers.servers import Mailbox, SmsGateway

SENDER = "Central Library <holds@library.example.org>"
PUBLIC_URL = "https://holds.example.org"


@pytest.fixture
def mailbox() -> Iterator[Mailbox]:
    box = Mailbox()  # the port is chosen; tests start the server (or leave it down)
    yield box
    box.stop()


@pytest.fixture
def gateway() -> Iterator[SmsGateway]:
    server = SmsGateway().start()
    yield server
    server.stop()


def configure(instance: Path, text: str) -> None:
    """Insert top-level-table TOML before the branch tables of the test instance."""
    config = instance / "holdshelf.toml"
    body = config.read_text()
    head, sep, tail = body.partition("\n[branches.")
    config.write_text(head + "\n" + text + "\n" + sep + tail)


@pytest.fixture
def instance_dir(instance_dir: Path, mailbox: Mailbox, gateway: SmsGateway) -> Path:
    configure(
        instance_dir,
        f'[mail]\nhost = "127.0.0.1"\nport = {mailbox.port}\nsecurity = "none"\n'
        f'sender = "{SENDER}"\ntimeout = 5\n'
        f'[sms]\ngateway = "http"\nurl = "{gateway.url}"\ntoken = "gateway-secret"\n'
        f'[web]\npublic_url = "{PUBLIC_URL}"\n'
        '[privacy]\ncontact = "privacy@library.example.org"\n',
    )
    return instance_dir


@pytest.fixture
def worker(service: HoldService, clock: Clock) -> Worker:
    return Holdshelf(service.settings, clock=clock, engine=service.engine).worker


def notices(service: HoldService) -> list[Notice]:
    with service.sessions() as session:
        return list(session.scalars(select(Notice).order_by(Notice.id)))


def sent(worker: Worker) -> int:
    return worker.run_once().notices.sent


# -- email -------------------------------------------------------------------------------------


def test_email_notice(service, worker, mailbox, patrons) -> None:
    mailbox.start()
    patron = patrons[0]
    entry = service.ready(
        "MAIN", "39010001234567", patron.card, email=patron.email, title="The Remains of the Day"
    )
    (queued,) = notices(service)
    assert queued.channel == "email" and queued.sealed
    assert patron.email not in queued.sealed  # encrypted at rest
    assert sent(worker) == 1
    ((recipients, message),) = mailbox.messages
    assert recipients == [patron.email]
    assert message["To"] == patron.email
    assert message["From"] == SENDER
    assert message["Subject"] == f"Your hold is ready: {entry.code.display}"
    text = message.get_body(("plain",)).get_content()
    html = message.get_body(("html",)).get_content()
    for body in (text, html):
        assert entry.code.display in body
        assert f"section {entry.section}" in body
        assert "Monday, November 30, 2026" in body
        assert f"{PUBLIC_URL}/p/" in body
        assert "Remains of the Day" not in body  # titles are off by default
    assert "check it out at the self-check" in text
    assert text.rstrip().splitlines()[-1].startswith(f"{PUBLIC_URL}/p/")  # ends with the link
    body_only = "\n".join([text, html, message["Subject"]])
    assert_no_patron_data(body_only.replace(patron.email, ""), [patron])  # only as recipient
    (done,) = notices(service)
    assert (done.status, done.sealed, done.attempts) == ("sent", None, 1)
    assert sent(worker) == 0
    assert len(mailbox.messages) == 1


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")  # see Mailbox
@pytest.mark.parametrize("security", ["starttls", "tls"])
def test_email_over_tls_to_a_relay_with_a_private_ca(
    service, clock, patrons, tmp_path, security
) -> None:
    """The relay most libraries have: TLS (STARTTLS on 587 or implicit on 465), a login, and
    often a certificate from the library's own CA. The certificate is always verified."""
    from holdshelf.settings import load_settings
    from tests.helpers.certificates import make_certificates

    certificates = make_certificates(tmp_path / "certs")
    relay = Mailbox(
        security=security, tls_context=certificates.server_context, login=("holds", "s3cret")
    ).start()

    def worker_with(password: str, ca_file: str = "") -> Worker:
        environ = {
            "HOLDSHELF_MAIL__PORT": str(relay.port),
            "HOLDSHELF_MAIL__SECURITY": security,
            "HOLDSHELF_MAIL__USERNAME": "holds",
            "HOLDSHELF_MAIL__PASSWORD": password,
            "HOLDSHELF_MAIL__CA_FILE": ca_file,
        }
        settings = load_settings(service.settings.instance_dir, environ=environ)
        return Holdshelf(settings, clock=clock, engine=service.engine).worker

    try:
        entry = service.ready("MAIN", "I1", patrons[0].card, email=patrons[0].email)
        untrusted = worker_with("s3cret").run_once(ignore_backoff=True).notices
        assert "certificate is not trusted" in untrusted.failed["email"]
        wrong = worker_with("wrong", str(certificates.ca_file)).run_once(ignore_backoff=True)
        assert wrong.notices.failed["email"] == "mail server refused the login (535)"
        assert relay.messages == []  # both kept the notice queued: configuration to fix
        good = worker_with("s3cret", str(certificates.ca_file)).run_once(ignore_backoff=True)
        assert good.notices.sent == 1
        ((recipients, message),) = relay.messages
        assert recipients == [patrons[0].email] and entry.code.display in message["Subject"]
    finally:
        relay.stop()


def test_a_relay_without_starttls_or_login_is_named(service, mailbox, clock, patrons) -> None:
    """The settings ask for what this relay cannot do: staff see which, the notice waits."""
    from holdshelf.settings import load_settings

    mailbox.start()  # plain SMTP: no STARTTLS, no AUTH
    service.ready("MAIN", "I1", patrons[0].card, email=patrons[0].email)
    for environ, problem in (
        ({"HOLDSHELF_MAIL__SECURITY": "starttls"}, "offers no STARTTLS (check mail.security)"),
        ({"HOLDSHELF_MAIL__USERNAME": "holds"}, "offers no login (check mail.username"),
    ):
        settings = load_settings(service.settings.instance_dir, environ=environ)
        report = Holdshelf(settings, clock=clock, engine=service.engine).worker.run_once(
            ignore_backoff=True
        )
        assert problem in report.notices.failed["email"]
    assert mailbox.messages == []
    assert notices(service)[0].status == "queued"


def test_desk_holds_say_ask_at_the_desk(service, worker, mailbox, patrons) -> None:
    mailbox.start()
    service.opt_out(patrons[0].card)
    service.ready("MAIN", "I1", patrons[0].card, email=patrons[0].email)
    worker.run_once()
    text = mailbox.messages[0][1].get_body(("plain",)).get_content()
    assert "Ask at the desk" in text
    assert "You chose to pick up holds at the desk. To change that:" in text


def test_server_down_then_up_sends_each_notice_once(service, worker, mailbox, clock, patrons):
    for n, patron in enumerate(patrons[:3]):
        service.ready("MAIN", f"I{n}", patron.card, email=patron.email)
    report = worker.run_once().notices
    assert report.sent == 0
    assert "connection refused" in report.failed["email"]
    waiting = notices(service)
    assert [n.attempts for n in waiting] == [1, 0, 0]  # the server is skipped after a failure
    assert all(n.status == "queued" and n.sealed for n in waiting)
    mailbox.start()
    clock.advance(seconds=6)
    assert sent(worker) == 3
    assert sent(worker) == 0
    clock.advance(minutes=10)
    assert sent(worker) == 0
    assert sorted(r[0][0] for r in mailbox.messages) == sorted(p.email for p in patrons[:3])
    assert {n.status for n in notices(service)} == {"sent"}


def test_a_lost_reply_sends_the_notice_again_with_the_same_message_id(
    service, worker, mailbox, clock, patrons
) -> None:
    """The server took the message and the "250" never came: indistinguishable from a message
    it never took, so it goes again (at least once); both copies carry one Message-ID."""
    mailbox.lose_replies = 1
    mailbox.start()
    service.ready("MAIN", "I1", patrons[0].card, email=patrons[0].email)
    service.ready("MAIN", "I2", patrons[1].card, email=patrons[1].email)
    report = worker.run_once().notices
    assert report.sent == 0 and "mail server unreachable" in report.failed["email"]
    clock.advance(seconds=10)
    assert sent(worker) == 2
    clock.advance(minutes=10)
    assert sent(worker) == 0
    ids = [(to[0], message["Message-ID"]) for to, message in mailbox.messages]
    assert [to for to, _ in ids] == [patrons[0].email] * 2 + [patrons[1].email]
    assert ids[0][1] == ids[1][1] != ids[2][1]  # one notice, one Message-ID
    assert ids[0][1].endswith("@library.example.org>")
    assert {n.status for n in notices(service)} == {"sent"}


def test_temporary_refusal_is_retried(service, worker, mailbox, clock, patrons) -> None:
    mailbox.reply = "451 4.3.0 Mailbox busy, try again later"
    mailbox.start()
    service.ready("MAIN", "I1", patrons[0].card, email=patrons[0].email)
    report = worker.run_once().notices
    assert report.failed == {"email": "mail server refused the recipient (451)"}
    mailbox.reply = None
    clock.advance(seconds=6)
    assert sent(worker) == 1
    assert len(mailbox.messages) == 1


def test_permanent_refusal_stops_and_erases(service, worker, mailbox, clock, patrons) -> None:
    mailbox.reply = "550 5.1.1 No such user here"
    mailbox.start()
    entry = service.ready("MAIN", "I1", patrons[0].card, email=patrons[0].email)
    report = worker.run_once().notices
    assert report.given_up == 1
    (failed,) = notices(service)
    assert (failed.status, failed.sealed) == ("failed", None)
    assert failed.last_error == "mail server refused the recipient (550)"
    views = worker.notices.notices(include_finished=True)
    assert [(v.code, v.status) for v in views] == [(entry.code, "failed")]
    assert patrons[0].email not in repr(views)
    clock.advance(hours=1)
    mailbox.reply = None
    assert sent(worker) == 0  # given up for good: not sent later


def test_hold_ending_erases_a_waiting_contact(service, worker, mailbox, patrons) -> None:
    entry = service.ready("MAIN", "I1", patrons[0].card, email=patrons[0].email)
    service.pickup(entry.code.display)
    (dropped,) = notices(service)
    assert (dropped.status, dropped.sealed) == ("dropped", None)
    mailbox.start()
    assert sent(worker) == 0
    assert mailbox.messages == []


def test_reprint_never_sends_another_notice(service, worker, mailbox, patrons) -> None:
    mailbox.start()
    entry = service.ready("MAIN", "I1", patrons[0].card, email=patrons[0].email)
    worker.run_once()
    service.reprint(entry.code.display)
    report = worker.run_once()
    assert report.prints.sent == 1
    assert report.notices.sent == 0
    assert len(mailbox.messages) == 1


def test_titles_only_where_the_library_shows_them(service, clock, mailbox, patrons) -> None:
    from holdshelf.settings import load_settings

    mailbox.start()
    settings = load_settings(
        service.settings.instance_dir, environ={"HOLDSHELF_NOTICES__SHOW_TITLE": "true"}
    )
    titled = HoldService(settings, service.sessions, clock)
    titled.ready("MAIN", "I1", patrons[0].card, email=patrons[0].email, title="Middlemarch")
    Holdshelf(settings, clock=clock, engine=service.engine).worker.run_once()
    assert "Middlemarch" in mailbox.messages[0][1].get_body(("plain",)).get_content()


def test_spanish_branch_sends_spanish(service, worker, mailbox, clock, patrons) -> None:
    from holdshelf.settings import load_settings

    mailbox.start()
    settings = load_settings(
        service.settings.instance_dir, environ={"HOLDSHELF_BRANCHES__EAST__LANGUAGE": "es"}
    )
    spanish = HoldService(settings, service.sessions, clock)
    entry = spanish.ready("EAST", "I1", patrons[0].card, email=patrons[0].email)
    Holdshelf(settings, clock=clock, engine=service.engine).worker.run_once()
    message = mailbox.messages[0][1]
    assert message["Subject"] == f"Su reserva está lista: {entry.code.display}"
    text = message.get_body(("plain",)).get_content()
    assert f"Búsquela en el estante de reservas, sección {entry.section}" in text
    assert "sábado, 28 de noviembre de 2026" in text  # EAST: 5 days


# -- SMS -----------------------------------------------------------------------------------------


def test_sms_through_the_http_gateway(service, worker, gateway, clock, patrons) -> None:
    patron = patrons[0]
    gateway.status = 503
    entry = service.ready("MAIN", "I1", patron.card, sms=patron.phone)
    report = worker.run_once().notices
    assert report.failed == {"sms": "SMS gateway answered 503"}
    gateway.status = 200
    clock.advance(seconds=6)
    assert sent(worker) == 1
    (request,) = gateway.delivered
    assert request["auth"] == "Bearer gateway-secret"
    assert request["json"]["to"] == patron.phone.replace(" ", "")
    text = request["json"]["message"]
    assert len(text) <= 160
    assert entry.code.display in text and f"section {entry.section}" in text
    assert f"{PUBLIC_URL}/p/" in text
    assert_no_patron_data(text, [patron])
    assert notices(service)[0].sealed is None


def test_sms_gateway_rejection_is_permanent(service, worker, gateway, patrons) -> None:
    gateway.status = 400
    service.ready("MAIN", "I1", patrons[0].card, sms=patrons[0].phone)
    assert worker.run_once().notices.given_up == 1
    assert notices(service)[0].status == "failed"


def test_sms_through_an_email_gateway(service, clock, mailbox, patrons) -> None:
    from holdshelf.settings import load_settings

    mailbox.start()
    settings = load_settings(
        service.settings.instance_dir,
        environ={
            "HOLDSHELF_SMS__GATEWAY": "email",
            "HOLDSHELF_SMS__EMAIL_DOMAIN": "sms.example.net",
        },
    )
    via_email = HoldService(settings, service.sessions, clock)
    via_email.ready("MAIN", "I1", patrons[0].card, sms="+1 (312) 555-0123")
    Holdshelf(settings, clock=clock, engine=service.engine).worker.run_once()
    ((recipients, message),) = mailbox.messages
    assert recipients == ["13125550123@sms.example.net"]
    assert len(message.get_content().strip()) <= 160


def test_long_branch_names_still_fit_one_message(service, worker, gateway, clock, patrons):
    from holdshelf.settings import load_settings

    settings = load_settings(
        service.settings.instance_dir,
        environ={"HOLDSHELF_BRANCHES__MAIN__NAME": "The Very Long Name Memorial Public Library"},
    )
    long_named = HoldService(settings, service.sessions, clock)
    long_named.ready("MAIN", "I1", patrons[0].card, sms=patrons[0].phone)
    Holdshelf(settings, clock=clock, engine=service.engine).worker.run_once()
    text = gateway.delivered[0]["json"]["message"]
    assert len(text) <= 160
    assert text.startswith("Hold ")  # the shorter wording


def test_a_public_url_too_long_for_one_message_is_refused_at_start(service, clock) -> None:
    from holdshelf.errors import ConfigError
    from holdshelf.settings import load_settings

    def worker_with(url: str) -> Worker:
        environ = {"HOLDSHELF_WEB__PUBLIC_URL": url, "HOLDSHELF_BRANCHES__EAST__CODE_LENGTH": "8"}
        settings = load_settings(service.settings.instance_dir, environ=environ)
        return Holdshelf(settings, clock=clock, engine=service.engine).worker

    worker_with("https://holds.example.org/" + "x" * 31)  # 57 characters: fits
    with pytest.raises(ConfigError, match=r"branch EAST could run to 16[0-9] characters"):
        worker_with("https://holds.example.org/" + "x" * 34)


def test_notices_a_mail_library_cannot_take_fail_plainly(
    service, worker, mailbox, patrons, monkeypatch, caplog
) -> None:
    """A bug while building a message keeps the notice and logs no address; a stored
    address that today's checks refuse (queued by an older version) ends the notice."""
    import holdshelf.notice_worker as notice_worker
    from holdshelf.sealing import Sealer

    mailbox.start()
    entry = service.ready("MAIN", "I1", patrons[0].card, email=patrons[0].email)

    def broken(content, sender, to, message_id=None):
        raise ValueError(f"cannot parse {to}")

    monkeypatch.setattr(notice_worker, "email_message", broken)
    assert worker.run_once().notices.failed == {"email": "internal error (ValueError)"}
    monkeypatch.undo()
    assert patrons[0].email not in caplog.text
    assert "ValueError at test_notices.py" in caplog.text  # where, without the message

    with service.sessions.begin() as session:  # as an older version might have queued it
        (notice,) = session.scalars(select(Notice))
        notice.sealed = Sealer(service.settings.data_key).seal({"to": "ana,x@example.org"})
    assert worker.run_once(ignore_backoff=True).notices.given_up == 1
    (failed,) = notices(service)
    assert (failed.status, failed.sealed) == ("failed", None)
    assert failed.last_error == "the email contact cannot be used"
    assert mailbox.messages == [] and service.find(entry.code.display) == entry


# -- what is stored ------------------------------------------------------------------------------


def test_contacts_never_reach_the_database_in_clear(
    service, worker, mailbox, gateway, clock, patrons
) -> None:
    mailbox.start()
    for n, patron in enumerate(patrons[:10]):
        service.ready("MAIN", f"I{n}", patron.card, email=patron.email, sms=patron.phone)
    with service.sessions() as session:
        sealed = [n.sealed for n in session.scalars(select(Notice))]
    worker.run_once()
    assert len(mailbox.messages) == 10 and len(gateway.delivered) == 10
    clock.advance(days=2)
    service.purge()
    raw = raw_database_bytes(service)
    for patron in patrons[:10]:
        assert patron.email.encode() not in raw
        assert patron.phone.replace(" ", "").encode() not in raw
        assert patron.card.encode() not in raw
    for token in sealed:
        assert token.encode() not in raw  # not even encrypted: erased


def test_bad_contacts_are_refused(service, patrons) -> None:
    card = patrons[0].card
    with pytest.raises(InvalidInput, match="email address does not look like one"):
        service.ready("MAIN", "I1", card, email="not an address")
    with pytest.raises(InvalidInput, match="mobile number must have 7 to 15 digits"):
        service.ready("MAIN", "I1", card, sms="12-34")
    assert service.shelf() == []


def test_unconfigured_channels_are_refused(tmp_path, database_url, clock, patrons) -> None:
    from holdshelf.settings import load_settings
    from holdshelf.storage import database
    from tests.conftest import make_instance

    instance = make_instance(tmp_path / "instance", database_url)
    if database_url.startswith("sqlite"):
        database.upgrade(database.make_engine(database_url))
    plain = Holdshelf(load_settings(instance, environ={}), clock=clock).service
    with pytest.raises(InvalidInput, match=r"email notices are not set up here \(\[mail\] host\)"):
        plain.ready("MAIN", "I1", patrons[0].card, email=patrons[0].email)
    with pytest.raises(InvalidInput, match="text-message notices are not set up"):
        plain.ready("MAIN", "I1", patrons[0].card, sms=patrons[0].phone)
    plain.engine.dispose()


def test_notices_command_shows_no_addresses(service, mailbox, patrons, capsys) -> None:
    from holdshelf.cli import main

    service.ready("MAIN", "I1", patrons[0].card, email=patrons[0].email, sms=patrons[0].phone)
    for args in (["notices"], ["notices", "--json"], ["worker", "--once"], ["notices", "--all"]):
        with pytest.raises(SystemExit):
            main(["--instance", str(service.settings.instance_dir), *args])
    out, err = capsys.readouterr()
    assert "email queued" in out and "sms queued" in out
    assert "notices sent: 1" in out  # the gateway took the SMS; the mail server is down
    assert "email: mail server unreachable (connection refused)" in err
    assert_no_patron_data(out + err, [patrons[0]])


def link_in(text: str) -> str:
    match = re.search(re.escape(PUBLIC_URL) + r"(/p/[A-Za-z0-9_-]+)", text)
    assert match, "the notice carries the link"
    return match.group(1)


def test_the_link_in_a_notice_switches_to_desk_pickup(service, worker, mailbox, app, patrons):
    mailbox.start()
    patron = patrons[0]
    first = service.ready("MAIN", "I1", patron.card, email=patron.email)
    worker.run_once()
    path = link_in(mailbox.messages[0][1].get_body(("plain",)).get_content())
    browser = app.test_client()
    page = browser.get(path)
    assert page.status_code == 200
    assert "Keep my holds behind the desk" in page.get_data(as_text=True)
    assert "Set-Cookie" not in page.headers
    done = browser.post(path, data={"choice": "desk"})
    assert done.status_code == 200
    body = done.get_data(as_text=True)
    assert "From now on your holds are kept behind the desk" in body
    assert "Staff will move the holds already on the shelf to the desk" in body
    assert "Set-Cookie" not in done.headers
    assert [e.code for e in service.shelf() if e.move_to_desk] == [first.code]
    assert service.ready("MAIN", "I2", patron.card).mode.value == "desk"
    assert_no_patron_data(body, [patron])


def test_web_check_in_with_an_email(client, service, worker, mailbox, patrons) -> None:
    from tests.helpers.web import post

    mailbox.start()
    form = client.get("/checkin").get_data(as_text=True)
    assert 'id="email"' in form and 'id="sms"' in form
    refused = post(
        client, "/checkin", {"item": "I1", "card": patrons[0].card, "email": "not-an-address"}
    )
    assert refused.status_code == 422
    assert "not-an-address" not in refused.get_data(as_text=True)  # never echoed back
    done = post(
        client, "/checkin", {"item": "I1", "card": patrons[0].card, "email": patrons[0].email}
    )
    assert done.status_code == 302
    assert worker.run_once().notices.sent == 1
    assert mailbox.messages[0][0] == [patrons[0].email]
    page = client.get(done.headers["Location"]).get_data(as_text=True)
    assert_no_patron_data(page, patrons)


def test_a_card_scanned_into_the_mobile_number_field_is_refused(service, patrons) -> None:
    from holdshelf.errors import InvalidInput

    anna, ben = patrons[0], patrons[1]
    with pytest.raises(InvalidInput, match="this is a patron's card, not a mobile number") as bad:
        service.ready("MAIN", "I1", anna.card, sms=anna.card)  # the card twice
    assert bad.value.field == "sms"
    service.opt_out(ben.card)  # Ben is known
    with pytest.raises(InvalidInput, match="not a mobile number"):
        service.ready("MAIN", "I1", anna.card, sms=ben.card)
    assert notices(service) == []
    assert_no_patron_data(raw_database_bytes(service), patrons)
