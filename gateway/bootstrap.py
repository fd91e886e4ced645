"""Composition root of the gateway: settings → users, tokens and web sessions (store, rules, signing
key) → upstream channels → transcoder and adapters → route table → CORS → the ASGI application,
behind the trusted proxies' forwarded headers.

:func:`build` does no I/O beyond reading the users file and the signing key, so a bad file fails at
once; the application's lifespan then migrates the ``gateway`` schema, provisions the users, and on
shutdown closes the upstream channels and the database pool.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import secrets
from pathlib import Path

from starlette.applications import Starlette
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from gateway import routes
from gateway.app import Gateway
from gateway.auth import Authenticator, LoginThrottle, TokenEndpoints
from gateway.cors import Cors
from gateway.downloads import Downloads
from gateway.me import MeEndpoints
from gateway.sessions import Sessions
from gateway.settings import GatewaySettings
from gateway.store.sql import SqlUserStore
from gateway.store.tables import SCHEMA
from gateway.transcoder import Transcoder
from gateway.uploads import Uploads
from gateway.upstreams import Upstreams
from gateway.user_admin import UserEndpoints
from gateway.users import Accounts, parse_users_file
from gateway.views import Views
from gateway.webtokens import MIN_KEY_BYTES, Signer
from services.kit import db, telemetry
from services.kit.db import UnitOfWork
from services.kit.settings import SettingsError

MIGRATIONS = Path(__file__).parent / "migrations"
log = logging.getLogger("tessera.gateway")


def signing_key(settings: GatewaySettings) -> bytes:
    """The key of the web frontend's access tokens: ``TESSERA_JWT_SECRET_FILE``'s bytes, or a random one."""
    if not settings.jwt_secret_file:
        log.warning("TESSERA_JWT_SECRET_FILE is not set: web sessions are signed with a key of this process only")
        return secrets.token_bytes(MIN_KEY_BYTES)
    try:
        key = Path(settings.jwt_secret_file).read_bytes().strip()
    except OSError as exc:
        raise SettingsError(f"TESSERA_JWT_SECRET_FILE: {exc}") from None
    if len(key) < MIN_KEY_BYTES:
        raise SettingsError(f"TESSERA_JWT_SECRET_FILE: the key must be at least {MIN_KEY_BYTES} bytes")
    return key


def build(settings: GatewaySettings):
    """The gateway's application, everything wired; serving it (uvicorn, with its own proxy headers
    handling off: see :mod:`gateway.__main__`) starts the lifespan."""
    if not settings.database_url:
        raise SettingsError("TESSERA_DATABASE_URL is required (the gateway keeps its users there)")
    users = parse_users_file(settings.users_file) if settings.users_file else None
    try:
        cors = Cors(settings.cors_origins)
    except ValueError as exc:
        raise SettingsError(f"TESSERA_CORS_ORIGINS: {exc}") from None
    signer = Signer(signing_key(settings), settings.org_id)
    engine = db.create_engine(settings.database_url, SCHEMA)
    transactions = UnitOfWork(engine, repositories=SqlUserStore)
    accounts = Accounts(transactions, signer=signer)
    sessions = Sessions(
        transactions,
        accounts,
        signer,
        access_lifetime=dt.timedelta(minutes=settings.access_token_minutes),
        refresh_lifetime=dt.timedelta(minutes=settings.refresh_token_minutes),
        reuse_grace=dt.timedelta(seconds=settings.refresh_reuse_grace_seconds),
    )
    authenticator = Authenticator(accounts, settings.token_cache_seconds, signer, sessions)
    throttle = LoginThrottle(settings.login_rate, user_rate=settings.login_user_rate)
    upstreams = Upstreams(settings)
    downloads = Downloads(upstreams, settings.model_export_channels)
    table = routes.table(
        Transcoder(upstreams, settings.max_json_bytes),
        TokenEndpoints(accounts, authenticator, throttle, settings.token_lifetime_minutes),
        Uploads(
            upstreams,
            settings.base_url(),
            settings.max_upload_bytes,
            settings.max_json_bytes,
            settings.servermedias_root,
        ),
        downloads,
        Views(settings, upstreams, authenticator.authenticate, downloads.export_enabled),
        MeEndpoints(sessions, throttle, cors, settings.cookie_domain),
        UserEndpoints(accounts, authenticator, throttle),
    )
    gateway = Gateway(
        table, authenticator, version=settings.version, tracer=telemetry.tracer(settings.service_name), cors=cors
    )

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

    application = gateway.application(lifespan)
    if not settings.trusted_proxies:
        return application
    # Only these peers may say who the client is (login throttling) and that it came over https (Secure cookies).
    return ProxyHeadersMiddleware(application, trusted_hosts=list(settings.trusted_proxies))
