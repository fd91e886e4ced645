"""The calls compute makes to the Kubernetes API, on the official client, from asyncio through threads.

Objects travel as plain dicts (the API's JSON): requests are built by :mod:`.specs` and checked
against the client's models; answers are read raw (``_preload_content=False``) so the rules read
exactly what the server sent. The API server being away or overloaded is
:class:`~services.kit.errors.Unavailable` (the work message is redelivered); a refusal by RBAC is
:class:`~services.kit.errors.PermissionDenied` (compute's own misconfiguration).
"""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import Callable
from typing import Any

import urllib3
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from services.kit import errors

REQUEST_TIMEOUT = (10, 60)  # connect, read (seconds)
LOG_TIMEOUT = (5, 20)


def api_client(kubeconfig: str = "") -> client.ApiClient:
    """A client from a kubeconfig file, or from the pod's ServiceAccount when ``kubeconfig`` is empty."""
    if kubeconfig:
        return config.new_client_from_config(config_file=kubeconfig)
    configuration = client.Configuration()
    config.load_incluster_config(client_configuration=configuration)
    return client.ApiClient(configuration)


def _translated(call: Callable[[], Any]) -> Any:
    try:
        return call()
    except ApiException as exc:
        raise _error(exc) from exc
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        raise errors.Unavailable(f"the Kubernetes API is unreachable: {exc}") from exc


class Conflict(errors.AlreadyExists):
    """The object exists already (409)."""


def _error(exc: ApiException) -> errors.DomainError:
    message = f"Kubernetes API: {exc.status} {exc.reason}: {_message(exc)}"
    if exc.status == 404:
        return errors.NotFound(message)
    if exc.status == 409:
        return Conflict(message)
    if exc.status in (401, 403):
        return errors.PermissionDenied(message)
    if exc.status in (429, 500, 502, 503, 504) or exc.status is None:
        return errors.Unavailable(message)
    return errors.InvalidArgument(message)


def _message(exc: ApiException) -> str:
    try:
        return json.loads(exc.body or "{}").get("message", "") or ""
    except (ValueError, AttributeError):
        return str(exc.body or "")[:200]


def _json(response: Any) -> dict:
    return json.loads(response.data)


class Api:
    """One namespace's pods, logs, Jobs and NetworkPolicies, as dicts; every call in a thread."""

    def __init__(self, api: client.ApiClient, namespace: str) -> None:
        self.client = api
        self.namespace = namespace
        self.core = client.CoreV1Api(api)
        self.batch = client.BatchV1Api(api)
        self.networking = client.NetworkingV1Api(api)

    async def _call(self, method: Callable, *args: Any, **kwargs: Any) -> Any:
        call = functools.partial(
            method, *args, _request_timeout=kwargs.pop("_request_timeout", REQUEST_TIMEOUT), **kwargs
        )
        return await asyncio.to_thread(_translated, call)

    async def _read(self, method: Callable, *args: Any, **kwargs: Any) -> dict | None:
        """A raw read; None when the object does not exist."""
        try:
            return _json(await self._call(method, *args, _preload_content=False, **kwargs))
        except errors.NotFound:
            return None

    # ------------------------------------------------------------------------------------ pods
    async def pod(self, name: str) -> dict | None:
        return await self._read(self.core.read_namespaced_pod, name, self.namespace)

    async def pods(self, selector: str) -> list[dict]:
        listed = await self._read(self.core.list_namespaced_pod, self.namespace, label_selector=selector)
        return (listed or {}).get("items") or []

    async def create_pod(self, body: dict) -> dict:
        """Create a pod (:class:`Conflict` when one of that name exists)."""
        model = client.V1Pod.from_dict(body)
        return _json(await self._call(self.core.create_namespaced_pod, self.namespace, model, _preload_content=False))

    async def delete_pod(self, name: str, grace_seconds: int | None = None) -> bool:
        """Delete a pod; False when it was gone already."""
        try:
            await self._call(
                self.core.delete_namespaced_pod,
                name,
                self.namespace,
                grace_period_seconds=grace_seconds,
                _preload_content=False,
            )
        except errors.NotFound:
            return False
        return True

    async def pod_log(self, name: str, container: str, limit_bytes: int) -> str:
        """The container's log (its last ``limit_bytes`` at most, read from the start)."""
        response = await self._call(
            self.core.read_namespaced_pod_log,
            name,
            self.namespace,
            container=container,
            limit_bytes=limit_bytes,
            _preload_content=False,
            _request_timeout=LOG_TIMEOUT,
        )
        return response.data.decode("utf-8", errors="replace")

    # -------------------------------------------------------------------------------- policies
    async def ensure_network_policy(self, body: dict) -> bool:
        """Create the policy unless one of its name exists; True when this call created it."""
        name = body["metadata"]["name"]
        if await self._read(self.networking.read_namespaced_network_policy, name, self.namespace) is not None:
            return False
        try:
            await self._call(
                self.networking.create_namespaced_network_policy,
                self.namespace,
                client.V1NetworkPolicy.from_dict(body),
                _preload_content=False,
            )
        except Conflict:
            return False  # another compute of the namespace made it meanwhile
        return True

    # ------------------------------------------------------------------------------------ jobs
    async def job(self, name: str) -> dict | None:
        return await self._read(self.batch.read_namespaced_job, name, self.namespace)

    async def create_job(self, body: dict) -> dict:
        model = client.V1Job.from_dict(body)
        return _json(await self._call(self.batch.create_namespaced_job, self.namespace, model, _preload_content=False))

    async def delete_job(self, name: str) -> bool:
        """Delete a Job and its pods; False when it was gone already."""
        try:
            await self._call(
                self.batch.delete_namespaced_job,
                name,
                self.namespace,
                propagation_policy="Background",
                _preload_content=False,
            )
        except errors.NotFound:
            return False
        return True

    def close(self) -> None:
        self.client.close()
