"""The staff web app for the circulation desk, and the patrons' pages: a Flask app factory.

Blueprints per audience: ``auth`` (sign-in, branch), ``desk`` (circulation staff), ``admin``
(printers, audit log, privacy audit), ``patron`` (find your hold, privacy notice, links from
notices), ``api`` (the holds API for the ILS), ``ops`` (/healthz and /metrics for monitoring).
Pages are server-rendered; the only script moves the cursor between scanned fields. Nothing
is loaded from another origin.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING

from flask import Flask
from sqlalchemy.orm import Session, sessionmaker

from holdshelf.accounts import Accounts
from holdshelf.agents import PrintAgents
from holdshelf.clock import Clock
from holdshelf.integrations import Integrations
from holdshelf.print_worker import PrinterTrouble
from holdshelf.privacy_audit import PrivacyAudit
from holdshelf.resources import resource_dir
from holdshelf.service import HoldService
from holdshelf.settings import Settings
from holdshelf.web.extensions import csrf
from holdshelf.web.limits import Limiter, api_limiter, close_limiter, find_limiter
from holdshelf.web.problems import API_WINDOW
from holdshelf.web.proxy import TrustedProxy
from holdshelf.worker import Worker
from holdshelf.workflow.checkin import CheckIn

if TYPE_CHECKING:
    from holdshelf.bootstrap import Holdshelf

MAX_FORM_BYTES = 64 * 1024


@dataclass
class Desk:
    """What the views work with, kept in ``app.extensions["holdshelf"]``: the parts the
    composition root built, and the web app's limits (holdshelf.web.limits)."""

    settings: Settings
    service: HoldService
    accounts: Accounts
    integrations: Integrations
    privacy: PrivacyAudit
    worker: Worker
    agents: PrintAgents
    checkin: CheckIn | None  # check-in by the item alone, when an ILS is connected
    api_limiter: Limiter
    find_limiter: Limiter
    sessions: sessionmaker[Session]  # for /healthz and /metrics (holdshelf.health)
    clock: Clock

    def wake_worker(self) -> None:
        self.worker.wake()

    def printer_trouble(self, branch_id: str) -> PrinterTrouble | None:
        """The desk's printer banner: from the print agent where the branch has one."""
        if self.agents.is_agent_branch(branch_id):
            return self.agents.trouble(branch_id)
        return self.worker.prints.trouble(branch_id)


def create_app(root: Holdshelf) -> Flask:
    """The web app over what ``root`` (holdshelf.bootstrap) built."""
    from holdshelf.web import admin, agents, api, auth, desk, ops, patron, security

    settings = root.settings
    app = Flask(
        "holdshelf",
        template_folder=str(resource_dir("templates")),
        static_folder=str(resource_dir("static")),
    )
    app.config.update(
        SECRET_KEY=settings.secret_key,
        SESSION_COOKIE_NAME="holdshelf_session",
        SESSION_COOKIE_SECURE=not settings.development,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        # A desk page stays open all day: the token lives as long as the signed-in session.
        WTF_CSRF_TIME_LIMIT=None,
        MAX_CONTENT_LENGTH=MAX_FORM_BYTES,
    )
    limiters = (
        api_limiter(settings, root.sessions, API_WINDOW),
        find_limiter(settings, root.sessions),
    )
    for limiter in limiters:  # before the engine goes: a batched limiter still adds its counts
        root.on_close(functools.partial(close_limiter, limiter))
    app.extensions["holdshelf"] = Desk(
        settings=settings,
        service=root.service,
        accounts=root.accounts,
        integrations=root.integrations,
        privacy=root.privacy,
        worker=root.worker,
        agents=root.agents,
        checkin=root.checkin,
        api_limiter=limiters[0],
        find_limiter=limiters[1],
        sessions=root.sessions,
        clock=root.clock,
    )
    csrf.init_app(app)
    security.init_app(app)
    auth.init_app(app)
    patron.init_app(app, csrf)
    api.init_app(app, csrf)
    agents.init_app(app, csrf)
    for blueprint in (auth.bp, desk.bp, admin.bp, patron.bp, api.bp, agents.bp, ops.bp):
        app.register_blueprint(blueprint)
    # Always in place: without a trusted proxy it drops forwarded headers from everyone.
    proxied = TrustedProxy(app.wsgi_app, settings.web.trusted_proxies)
    app.wsgi_app = proxied  # type: ignore[method-assign]
    return app
