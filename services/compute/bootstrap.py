"""Composition root of compute: settings → engine and migrations → NATS work stream → ledger and
storage clients, executor (local jails, or Kubernetes pods with image builds and a reaper) → builds,
runs, reconciler, work consumer → servicer → server.

Nothing else builds or wires compute's parts. On stop, in this order: the consumer stops taking
work, the reconciler stops (and the Kubernetes executor lets its pods go on, for the next compute to
re-adopt), runs and the executor stop (their messages will be redelivered), then the clients close
their channels.
"""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

from tessera.asset.v1 import resources_pb2 as res
from tessera.compute.v1 import compute_service_pb2 as api
from tessera.compute.v1 import compute_service_pb2_grpc as api_grpc

from services.compute import isolation
from services.compute.builds import Builds
from services.compute.completions import Completions
from services.compute.consumer import WorkConsumer
from services.compute.domain.places import Places
from services.compute.domain.reconcile import Reconciliation
from services.compute.failures import FailureReports
from services.compute.files import Files
from services.compute.ledger import Ledger
from services.compute.local_executor import LocalExecutor
from services.compute.reconciler import Reconciler
from services.compute.runs import Runs
from services.compute.server import ComputeService
from services.compute.settings import ComputeSettings
from services.compute.store import SCHEMA
from services.kit import app, subjects
from services.kit.server import GrpcServer, credentials_from

MIGRATIONS = Path(__file__).parent / "migrations"
SERVICE = api.DESCRIPTOR.services_by_name["ComputeService"].full_name
STREAMS = [subjects.WORK]
TEARDOWNS_AT_ONCE = 4
OPEN_TIMEOUT = 60.0  # seconds the Kubernetes executor may take to reach the API server at start


async def build(settings: ComputeSettings) -> GrpcServer:
    """Everything compute needs, wired together; the caller starts the returned server."""
    places = Places(Path(settings.work_dir))
    places.root.mkdir(parents=True, exist_ok=True)
    if settings.executor not in ("local", "kubernetes"):
        raise ValueError(f"TESSERA_EXECUTOR={settings.executor!r}: local or kubernetes")
    base = await app.foundation(settings, SCHEMA, MIGRATIONS, STREAMS, own_organization_only=True)
    runs = None
    if settings.worker_enabled and settings.asset_addr:
        runs = await _worker(settings, places, base)
    service = ComputeService(settings.org_id, settings.slots, settings.executor, runs)
    base.server.add(api_grpc.add_ComputeServiceServicer_to_server, service, SERVICE)
    return base.server


async def _worker(settings: ComputeSettings, places: Places, base: app.Foundation) -> Runs:
    """The worker's parts, started, their stops registered on the server (called in reverse order)."""
    limits = settings.limits()
    uids = isolation.UidPool(settings.sandbox_uid_base, settings.sandbox_uid_count)
    creds = credentials_from(settings)
    ledger = Ledger(settings.asset_addr, creds)
    files = Files(creds, settings.peer_addresses(), places)
    base.server.on_stop(ledger.close)
    base.server.on_stop(files.close)
    failures = FailureReports(ledger, files, settings.public_url)
    # Build steps (virtualenv, pip) get the tasks' limits but CPU up to the build's wall-clock timeout: installing
    # packages legitimately takes more CPU than a task may.
    jails = isolation.OneShot(
        dataclasses.replace(limits, cpu_seconds=max(limits.cpu_seconds, int(settings.build_timeout))), uids
    )
    if settings.executor == "kubernetes":
        executor, prepare, reaper = await _kubernetes(settings, places, ledger, base)
    else:
        await asyncio.to_thread(isolation.check)  # no jail, no work: refuse to start rather than run bare
        executor = LocalExecutor(
            places.root,
            limits,
            uids,
            idle_seconds=settings.runner_idle_seconds,
            max_idle=settings.idle_runners,
            task_env=settings.task_env(),
        )
        base.server.on_stop(executor.close)
        prepare = reaper = None
    builds = Builds(settings.org_id, places, ledger, files, failures, jails, settings.build_timeout, prepare)
    reconciliation = Reconciliation(patience=settings.ack_wait)
    runs = Runs(
        places,
        ledger,
        files,
        builds,
        failures,
        Completions(places),
        executor,
        reconciliation,
        public_url=settings.public_url,
        task_timeout=settings.task_timeout,
        slots=settings.slots,
    )
    base.server.on_stop(runs.stop)
    if reaper is not None:
        # Stopped first (callbacks run in reverse): pods are let go before runs are stopped, and left
        # running for the next compute to re-adopt, instead of being deleted as canceled.
        base.server.on_stop(executor.detach)
        reaper.start()
        base.server.on_stop(reaper.stop)
    if base.js is not None:
        reconciler = Reconciler(
            settings.org_id,
            settings.own_channels(),
            ledger,
            runs,
            base.js,
            reconciliation,
            settings.reconcile_every,
        )
        reconciler.start()
        base.server.on_stop(reconciler.stop)
        consumer = WorkConsumer(
            base.js,
            settings.org_id,
            {"build": builds.on_build, "run": runs.on_run, "teardown": runs.on_teardown, "prepare": runs.on_prepare},
            {"build": settings.slots, "run": settings.slots, "teardown": TEARDOWNS_AT_ONCE, "prepare": settings.slots},
            ack_wait=settings.ack_wait,
            max_ack_pending=max(settings.slots * 4, 16),
        )
        runs.offer = lambda work: consumer.offer("run", work)
        await consumer.start()
        base.server.on_stop(consumer.stop)
    return runs


async def _kubernetes(settings: ComputeSettings, places: Places, ledger: Ledger, base: app.Foundation):
    """The Kubernetes executor, its image builds and its reaper (ADR 0010), their stops registered.
    Imported here: the local executor never loads the Kubernetes client."""
    from services.compute.kubernetes.api import Api, api_client
    from services.compute.kubernetes.executor import KubernetesExecutor, Reaper
    from services.compute.kubernetes.images import Images

    config = settings.kubernetes()
    api = Api(await asyncio.to_thread(api_client, settings.k8s_kubeconfig), config.namespace)
    base.server.on_stop(lambda: asyncio.to_thread(api.close))
    executor = KubernetesExecutor(
        api, config, places.root, grace=settings.k8s_grace, file_bytes=settings.file_size_mb * isolation.MIB
    )
    images = Images(api, config, places.root, grace=settings.k8s_grace)
    base.server.on_stop(executor.close)
    base.server.on_stop(images.close)
    await asyncio.wait_for(executor.open(), OPEN_TIMEOUT)  # the deny-all policy and the watch, before any task

    async def executing() -> set[str]:
        keys = set()
        for channel in settings.own_channels():
            keys |= {t.key for t in await ledger.tasks(channel, settings.org_id, [res.STATUS_EXECUTING])}
        return keys

    return executor, images.prepare, Reaper(executor, executing, settings.reconcile_every)
