"""The composition root: the one place that builds what Holdshelf runs on.

Settings, the engine and its sessions, the clock, and every service and worker are made here
(cosmicpython's bootstrap). The CLI, the web app factory, the worker and the tests take what it
builds; nothing else wires ``(settings, sessions, clock)`` together. Each part is made when first
asked for, so a command that needs no database opens none, and each part's module is imported
then too: ``holdshelf shelf`` needs the hold service, not the worker's notice templates (Jinja,
Babel), the print queue or Argon2.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cached_property
from typing import TYPE_CHECKING

from holdshelf.clock import Clock, LibraryClock

if TYPE_CHECKING:
    from sqlalchemy import Engine
    from sqlalchemy.orm import Session, sessionmaker

    from holdshelf.accounts import Accounts
    from holdshelf.agents import PrintAgents
    from holdshelf.ils.answers import Connector
    from holdshelf.integrations import Integrations
    from holdshelf.privacy_audit import PrivacyAudit
    from holdshelf.service import HoldService
    from holdshelf.settings import Settings
    from holdshelf.storage.wakeup import Wakeup
    from holdshelf.worker import HousekeepingReport, Worker
    from holdshelf.workflow.checkin import CheckIn
    from holdshelf.workflow.sync import IlsSync


class Holdshelf:
    """One instance's running parts, built from its settings."""

    def __init__(
        self,
        settings: Settings,
        *,
        clock: Clock | None = None,
        engine: Engine | None = None,
        check_schema: bool = True,
    ) -> None:
        self.settings = settings
        self.clock: Clock = clock or LibraryClock(settings.timezone)
        self._engine = engine
        self._check_schema = check_schema
        self._closing: list[Callable[[], None]] = []

    @cached_property
    def engine(self) -> Engine:
        from holdshelf.storage import database

        engine = self._engine or database.make_engine(self.settings.database_url)
        if self._check_schema:
            database.check_schema(engine)
        return engine

    @cached_property
    def wakeup(self) -> Wakeup:
        """How a process that queues a slip or notice wakes the workers of other processes."""
        from holdshelf.storage import wakeup

        return wakeup.for_engine(self.engine)

    @cached_property
    def sessions(self) -> sessionmaker[Session]:
        from holdshelf.storage import database, wakeup

        sessions = database.session_factory(self.engine)
        # Here, so every writer built on these sessions announces what it queues.
        wakeup.install(sessions, self.wakeup)
        return sessions

    @cached_property
    def service(self) -> HoldService:
        from holdshelf.service import HoldService

        return HoldService(self.settings, self.sessions, self.clock)

    @cached_property
    def accounts(self) -> Accounts:
        from holdshelf.accounts import Accounts

        return Accounts(self.settings, self.sessions, self.clock)

    @cached_property
    def integrations(self) -> Integrations:
        from holdshelf.integrations import Integrations

        return Integrations(self.settings, self.sessions, self.clock)

    @cached_property
    def agents(self) -> PrintAgents:
        from holdshelf.agents import PrintAgents

        return PrintAgents(self.settings, self.sessions, self.clock, self.wakeup)

    @cached_property
    def privacy(self) -> PrivacyAudit:
        """The privacy officer's inventory and disclosure lookups."""
        from holdshelf.privacy_audit import PrivacyAudit

        return PrivacyAudit(self.settings, self.sessions, self.clock, self.service)

    @cached_property
    def worker(self) -> Worker:
        from holdshelf.worker import Worker

        return Worker(
            self.settings,
            self.sessions,
            self.clock,
            housekeeping=self.housekeep,
            sync=self.sync,
            wakeup=self.wakeup,
        )

    @cached_property
    def connector(self) -> Connector | None:
        """The library's ILS connector, or None when [ils] kind = "none"; its calls and
        failures are counted for /metrics (holdshelf.health)."""
        from holdshelf.health import CountedConnector

        connector = make_connector(self.settings)
        return None if connector is None else CountedConnector(connector)

    @cached_property
    def checkin(self) -> CheckIn | None:
        """Check-in by the item alone, when an ILS is connected."""
        from holdshelf.workflow.checkin import CheckIn

        if self.connector is None:
            return None
        return CheckIn(self.settings, self.service, self.connector)

    @cached_property
    def sync(self) -> IlsSync | None:
        """Holds ended in the ILS, learned from it, when an ILS is connected."""
        from holdshelf.workflow.sync import IlsSync

        if self.connector is None:
            return None
        return IlsSync(self.settings, self.service, self.connector, self.clock)

    def housekeep(self) -> HousekeepingReport:
        """Everything retention asks to delete, now, with the services built here."""
        from holdshelf.storage.models import PURGED
        from holdshelf.worker import housekeep

        report = housekeep(self.service, self.accounts, self.integrations)
        self.privacy.record(PURGED)  # the privacy audit says when retention last ran
        return report

    def on_close(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` when these parts close, before the database goes away."""
        self._closing.append(callback)

    def close(self) -> None:
        while self._closing:
            self._closing.pop()()
        if "agents" in self.__dict__:
            self.agents.close()
        if self.__dict__.get("connector") is not None:
            self.connector.close()
        if "engine" in self.__dict__:
            self.engine.dispose()


def make_connector(settings: Settings) -> Connector | None:
    """The connector [ils] names; its modules are imported only by the kind in use."""
    ils = settings.ils
    if ils.kind == "koha":
        from holdshelf.ils.koha import KohaConnector

        return KohaConnector(ils.base_url, ils.client_id, ils.client_secret, timeout=ils.timeout)
    if ils.kind == "folio":
        from holdshelf.ils.folio import FolioConnector

        return FolioConnector(
            ils.okapi_url,
            ils.tenant,
            ils.username,
            ils.password,
            timeout=ils.timeout,
            timezone=settings.timezone,
        )
    if ils.kind == "sip2":
        from holdshelf.ils.sip2 import Sip2Connector

        return Sip2Connector(
            ils.host,
            ils.port,
            institution=ils.institution,
            tls=ils.tls,
            ca_file=ils.ca_file or None,
            lookup=ils.lookup,
            timeout=ils.timeout,
        )
    return None
