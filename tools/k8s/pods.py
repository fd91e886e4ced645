"""A watch of a namespace's pods on a background thread, for the stand-in kubelet of the tests and the
Kubernetes benchmark's clock."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any


class PodWatch:
    """Calls ``on_event(type, pod)`` for each change of the pods of ``namespace`` matching ``selector``,
    from entering until exiting. The watch resumes from the last resource version each time the API
    server ends it, and starts afresh when that version is too old (410 Gone)."""

    def __init__(self, cluster, namespace: str, selector: str, on_event: Callable[[str, Any], None]) -> None:
        self.cluster = cluster
        self.namespace = namespace
        self.selector = selector
        self._on_event = on_event
        self._stopped = threading.Event()
        self._watch = None
        self._thread = threading.Thread(target=self._follow, name=f"pods-{namespace}", daemon=True)

    def __enter__(self) -> PodWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stopped.set()
        if self._watch is not None:
            self._watch.stop()
        self._thread.join(10)

    def _follow(self) -> None:
        import kubernetes

        with self.cluster.api_client() as client:
            core = kubernetes.client.CoreV1Api(client)
            version = None
            while not self._stopped.is_set():
                self._watch = kubernetes.watch.Watch()
                try:
                    for event in self._watch.stream(
                        core.list_namespaced_pod,
                        self.namespace,
                        label_selector=self.selector,
                        resource_version=version,
                        timeout_seconds=30,
                    ):
                        pod = event["object"]
                        version = pod.metadata.resource_version
                        self._on_event(event["type"], pod)
                except kubernetes.client.ApiException as exc:
                    if exc.status == 410:
                        version = None
                except Exception:  # noqa: BLE001 - the cluster stopping under us
                    if not self._stopped.is_set():
                        self._stopped.wait(0.5)
