"""Composition root of the gateway: settings → users and tokens (store, rules) → upstream channels →
transcoder and adapters → route table → the ASGI application.

:func:`build` does no I/O beyond reading the users file, so a bad file fails at once; the application's
lifespan then migrates the ``gateway`` schema, provisions the users, and on shutdown closes the
upstream channels and the database pool.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

from starlette.applications import Starlette

from gateway import routes
from gateway.app import Gateway
from gateway.auth import Authenticator, LoginThrottle, TokenEndpoints
from gateway.downloads import Downloads
from gateway.settings import GatewaySettings
from gateway.store.sql import SqlUserStore
from gateway.store.tables import SCHEMA
from gateway.transcoder import Transcoder
from gateway.uploads import Uploads
from gateway.upstreams import Upstreams
from gateway.users import Accounts, parse_users_file
from gateway.views import Views
from services.kit import db, telemetry
from services.kit.db import UnitOfWork
from services.kit.settings import SettingsError

MIGRATIONS = Path(__file__).parent / "migrations"


def build(settings: GatewaySettings) -> Starlette:
    """The gateway's application, everything wired; serving it (uvicorn) starts the lifespan."""
    if not settings.database_url:
        raise SettingsError("TESSERA_DATABASE_URL is required (the gateway keeps its users there)")
    users = parse_users_file(settings.users_file) if settings.users_file else None
    engine = db.create_engine(settings.database_url, SCHEMA)
    accounts = Accounts(UnitOfWork(engine, repositories=SqlUserStore))
    authenticator = Authenticator(accounts, settings.token_cache_seconds)
    upstreams = Upstreams(settings)
    downloads = Downloads(upstreams, settings.model_export_channels)
    table = routes.table(
        Transcoder(upstreams, settings.max_json_bytes),
        TokenEndpoints(accounts, authenticator, LoginThrottle(settings.login_rate), settings.token_lifetime_minutes),
        Uploads(
            upstreams,
            settings.base_url(),
            settings.max_upload_bytes,
            settings.max_json_bytes,
            settings.servermedias_root,
        ),
        downloads,
        Views(settings, upstreams, authenticator.authenticate, downloads.export_enabled),
    )
    gateway = Gateway(table, authenticator, version=settings.version, tracer=telemetry.tracer(settings.service_name))

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette):
        await asyncio.to_thread(db.migrate, engine, SCHEMA, MIGRATIONS)
        if users is not None:
            await accounts.provision(users)
        try:
            yield
        finally:
            await upstreams.close()
            engine.dispose()

    return gateway.application(lifespan)
