"""NATS JetStream helpers: connect, declare streams and durable consumers idempotently."""

from __future__ import annotations

import logging

import nats
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, RetentionPolicy, StreamConfig
from nats.js.errors import NotFoundError

log = logging.getLogger("tessera.nats")


async def connect(url: str, name: str) -> nats.NATS:
    """A client connection that reconnects forever and names itself ``name`` in the server's monitoring."""
    return await nats.connect(url, name=name, max_reconnect_attempts=-1, reconnect_time_wait=0.5, drain_timeout=5)


async def ensure_stream(
    js: JetStreamContext,
    name: str,
    subjects: list[str],
    *,
    work_queue: bool = False,
    max_age_seconds: float | None = None,
    duplicate_window_seconds: float = 120.0,
) -> None:
    """Create stream ``name`` or bring its configuration up to date.

    ``work_queue`` streams delete a message once a consumer acknowledges it; the others keep
    messages within their limits so that consumers can replay. The duplicate window makes
    JetStream drop a re-published message with the same ``Nats-Msg-Id``.
    """
    config = StreamConfig(
        name=name,
        subjects=subjects,
        retention=RetentionPolicy.WORK_QUEUE if work_queue else RetentionPolicy.LIMITS,
        max_age=max_age_seconds,
        duplicate_window=duplicate_window_seconds,
    )
    try:
        await js.stream_info(name)
    except NotFoundError:
        await js.add_stream(config)
        log.info("declared stream %s", name, extra={"fields": {"subjects": subjects}})
        return
    await js.update_stream(config)


async def ensure_consumer(
    js: JetStreamContext,
    stream: str,
    durable: str,
    filter_subject: str,
    *,
    ack_wait_seconds: float = 30.0,
    max_deliver: int = -1,
    max_ack_pending: int = 1000,
) -> None:
    """Create (or update) a durable pull consumer with explicit acknowledgement."""
    config = ConsumerConfig(
        durable_name=durable,
        filter_subject=filter_subject,
        ack_policy=AckPolicy.EXPLICIT,
        deliver_policy=DeliverPolicy.ALL,
        ack_wait=ack_wait_seconds,
        max_deliver=max_deliver,
        max_ack_pending=max_ack_pending,
    )
    await js.add_consumer(stream, config)
