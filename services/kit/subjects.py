"""NATS JetStream streams and subjects shared by the services.

The payload of each subject is a protobuf message defined in ``protos/`` (see the comments of
``tessera/asset/v1/events.proto`` and ``tessera/compute/v1/work.proto``); never ad-hoc JSON.
"""

from __future__ import annotations

from dataclasses import dataclass

LEDGER_STREAM = "LEDGER_EVENTS"
"""Ledger events, kept within limits so consumers can replay (retention: limits)."""

WORK_STREAM = "WORK"
"""Work for each organization's compute service (retention: work queue, explicit ack)."""

WORK_KINDS = ("build", "run", "teardown", "prepare")


@dataclass(frozen=True)
class StreamSpec:
    """A JetStream stream, declared idempotently by every service that publishes to it or consumes it
    (so that no service depends on another having started first)."""

    name: str
    subjects: tuple[str, ...]
    work_queue: bool = False


def ledger_subject(channel: str, asset_kind: str) -> str:
    """``ledger.events.<channel>.<asset_kind>``, e.g. ``ledger.events.mychannel.compute_task``."""
    return f"ledger.events.{channel}.{asset_kind}"


def ledger_wildcard(channel: str | None = None) -> str:
    """Every ledger subject, or every subject of one channel."""
    return f"ledger.events.{channel}.>" if channel else "ledger.events.>"


def work_subject(org_id: str, kind: str) -> str:
    """``work.<org>.<kind>`` with kind one of ``build``, ``run``, ``teardown``, ``prepare``."""
    if kind not in WORK_KINDS:
        raise ValueError(f"unknown work kind {kind!r}")
    return f"work.{org_id}.{kind}"


LEDGER = StreamSpec(LEDGER_STREAM, (ledger_wildcard(),))
"""Published by the ledger's relay; followed by each organization's event service."""

WORK = StreamSpec(WORK_STREAM, ("work.>",), work_queue=True)
"""Published by each organization's event service; consumed by its compute service."""
