"""The process entry point every service's ``__main__`` shares."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from services.kit import db, logs, settings, telemetry
from services.kit.server import GrpcServer, authenticator_from
from services.kit.subjects import StreamSpec

S = TypeVar("S", bound=settings.CommonSettings)


def main(settings_cls: type[S], build: Callable[[S], Awaitable[GrpcServer]]) -> None:
    """Read settings, set up logs and tracing, build the server, serve until SIGTERM/SIGINT."""
    config = settings.load(settings_cls)
    logs.configure(config.service_name, config.log_level)
    telemetry.configure_tracing(config.service_name)

    async def serve() -> None:
        server = await build(config)
        await server.start()
        await server.wait()

    try:
        asyncio.run(serve())
    except Exception:
        logging.getLogger("tessera").exception("service failed")
        raise SystemExit(1) from None


async def database(
    config: settings.CommonSettings,
    schema: str,
    migrations: Path,
    server: GrpcServer,
    *,
    migrate_in_child: bool = False,
):
    """The service's engine, after its migrations ran (in a child interpreter with ``migrate_in_child``);
    disposed when ``server`` stops."""
    engine = engine_of(config, schema, server)
    if migrate_in_child:
        await asyncio.to_thread(db.migrate_in_child, config.database_url, schema, migrations)
    else:
        await asyncio.to_thread(db.migrate, engine, schema, migrations)
    return engine


def engine_of(
    config: settings.CommonSettings,
    schema: str,
    server: GrpcServer,
    *,
    serializable: bool = False,
    autocommit: bool = False,
):
    """An engine on the service's database and ``schema`` (see :func:`services.kit.db.create_engine`), disposed
    when ``server`` stops."""
    if not config.database_url:
        raise settings.SettingsError("TESSERA_DATABASE_URL is required")
    engine = db.create_engine(config.database_url, schema, serializable=serializable, autocommit=autocommit)

    async def dispose() -> None:
        engine.dispose()

    server.on_stop(dispose)
    return engine


async def jetstream(config: settings.CommonSettings, server: GrpcServer, streams: Sequence[StreamSpec] = ()):
    """A NATS connection and JetStream context with ``streams`` declared, or (None, None) without NATS."""
    if not config.nats_url:
        return None, None
    from services.kit import nats as kit_nats  # imported on use: services without NATS stay smaller

    connection = await kit_nats.connect(config.nats_url, config.service_name)
    js = connection.jetstream()
    for stream in streams:
        await kit_nats.ensure_stream(js, stream.name, list(stream.subjects), work_queue=stream.work_queue)
    server.on_stop(connection.drain)
    return connection, js


@dataclass
class Foundation:
    """What every service's composition root starts from."""

    server: GrpcServer
    engine: object  # sqlalchemy Engine
    nats: object | None  # nats.NATS
    js: object | None  # JetStreamContext


async def foundation(
    config: settings.CommonSettings,
    schema: str,
    migrations: Path,
    streams: Sequence[StreamSpec] = (),
    *,
    use_nats: bool = True,
    migrate_in_child: bool = False,
    own_organization_only: bool = False,
) -> Foundation:
    """Server with identity from the settings, migrated database, NATS with ``streams`` declared
    (unless the service does not use NATS at all). ``own_organization_only``: an organization's private
    service (compute, event) that no other organization may call, whatever its credential."""
    server = GrpcServer(config, authenticator_from(config), own_organization_only=own_organization_only)
    engine = await database(config, schema, migrations, server, migrate_in_child=migrate_in_child)
    connection, js = await jetstream(config, server, streams) if use_nats else (None, None)
    return Foundation(server=server, engine=engine, nats=connection, js=js)
