"""The composition root: the one place that builds what Holdshelf runs on.

Settings, the engine and its sessions, the clock, and every service and worker are made here
(cosmicpython's bootstrap). The CLI, the web app factory, the worker and the tests take what it
builds; nothing else wires ``(settings, sessions, clock)`` together. Each part is made when first
asked for, so a command that needs no database opens none.
"""

from __future__ import annotations

from functools import cached_property

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from holdshelf.accounts import Accounts
from holdshelf.clock import Clock, LibraryClock
from holdshelf.integrations import Integrations
from holdshelf.service import HoldService
from holdshelf.settings import Settings
from holdshelf.storage import database
from holdshelf.worker import HousekeepingReport, Worker, housekeep


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

    @cached_property
    def engine(self) -> Engine:
        engine = self._engine or database.make_engine(self.settings.database_url)
        if self._check_schema:
            database.check_schema(engine)
        return engine

    @cached_property
    def sessions(self) -> sessionmaker[Session]:
        return database.session_factory(self.engine)

    @cached_property
    def service(self) -> HoldService:
        return HoldService(self.settings, self.sessions, self.clock)

    @cached_property
    def accounts(self) -> Accounts:
        return Accounts(self.settings, self.sessions, self.clock)

    @cached_property
    def integrations(self) -> Integrations:
        return Integrations(self.settings, self.sessions, self.clock)

    @cached_property
    def worker(self) -> Worker:
        return Worker(self.settings, self.sessions, self.clock, housekeeping=self.housekeep)

    def housekeep(self) -> HousekeepingReport:
        """Everything retention asks to delete, now, with the services built here."""
        return housekeep(self.service, self.accounts, self.integrations)

    def close(self) -> None:
        if "engine" in self.__dict__:
            self.engine.dispose()
