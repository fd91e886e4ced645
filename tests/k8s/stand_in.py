"""A stand-in for a kubelet's container runtime, which cannot exist here: kwok moves pods through their
phases but runs no container. This plays the containers of compute's pods, and nothing more.

It watches the Running pods compute made in one namespace (``app.kubernetes.io/managed-by=
tessera-compute``) and plays each container once:

- a task pod: its command (plus args) runs on this machine in a bubblewrap jail (compute's own,
  ADR 0007) that maps the pod's volume mounts: each ``subPath`` of the shared hostPath volume
  (compute's work folder) at its ``mountPath``, read-only when the mount says so, and a private
  ``/tmp``; nothing else of the host but the interpreter and system libraries. The "image" is the
  function's build context compute staged (``images/<function key>``, named by the image's tag),
  mounted at ``/workspace`` (so the image's files are there: tests' Dockerfiles use that WORKDIR);
  the process starts in the container's ``workingDir`` (``/workspace`` without one) with its ``env``
  (``$$`` read as ``$``, as a kubelet reads it); ``python``/``python3`` is this interpreter (it has
  substratools). It runs as the pod's ``runAsUser``, with no network.
- a Kaniko build pod: "builds" by checking that the context holds a Dockerfile (exit 0, else 1).

The exit code goes to kwok (``Cluster.set_exit_code``), which ends the pod: Succeeded or Failed. A pod
deleted meanwhile has its process killed, as a kubelet would. What each container printed is kept in
``logs`` and served as a kubelet serves it: the API server answers ``pods/log`` by calling the node's
``/containerLogs/<namespace>/<pod>/<container>`` over HTTPS (it checks no kubelet certificate unless told
to), so the stand-in listens on 127.0.0.1 and gives the fake node that address and port.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import http.server
import os
import signal
import ssl
import subprocess
import sys
import threading
import urllib.parse
from pathlib import Path

import kubernetes
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from services.compute import isolation
from services.compute.kubernetes import specs
from tools.k8s.pods import PodWatch

PYTHONS = {"python", "python3", f"python3.{sys.version_info.minor}"}


class StandIn:
    """Plays the containers of compute's pods in ``namespace`` until stopped."""

    def __init__(self, cluster, namespace: str, folder: Path) -> None:
        self.cluster = cluster
        self.namespace = namespace
        self.folder = folder
        self.logs: dict[str, str] = {}
        self.runs: dict[str, int] = {}  # pod name → how many pods of that name had their container played
        self._played: set[str] = set()  # pod uids
        self._processes: dict[str, subprocess.Popen] = {}
        self._lock = threading.Lock()
        self._pods = PodWatch(cluster, namespace, f"{specs.MANAGED_BY}={specs.MANAGER}", self._on_pod)

    def __enter__(self) -> StandIn:
        self._serve_logs()
        self._pods.__enter__()
        return self

    def __exit__(self, *exc_info) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._pods.__exit__(*exc_info)
        with self._lock:
            for process in self._processes.values():
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)

    def _serve_logs(self) -> None:
        """The kubelet's log endpoint, on a free port of 127.0.0.1, which the fake node then advertises."""
        stand_in = self

        class Logs(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                url = urllib.parse.urlsplit(self.path)
                parts = url.path.strip("/").split("/")
                if len(parts) != 4 or parts[0] != "containerLogs" or parts[2] not in stand_in.logs:
                    self.send_error(404)
                    return
                body = stand_in.logs[parts[2]].encode()
                limit = urllib.parse.parse_qs(url.query).get("limitBytes")
                if limit:
                    body = body[: int(limit[0])]
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Logs)
        self._server.socket = _tls(self.folder).wrap_socket(self._server.socket, server_side=True)
        threading.Thread(target=self._server.serve_forever, name="stand-in-logs", daemon=True).start()
        port = self._server.server_address[1]
        status = {
            "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": port}},
        }
        with self.cluster.api_client() as api:
            core = kubernetes.client.CoreV1Api(api)
            for node in core.list_node().items:
                core.patch_node_status(node.metadata.name, {"status": status})

    def _on_pod(self, kind: str, pod) -> None:
        if kind == "DELETED" or pod.metadata.deletion_timestamp:
            self._kill(pod.metadata.name)
        elif pod.status.phase == "Running" and pod.metadata.uid not in self._played:
            self._played.add(pod.metadata.uid)
            self.runs[pod.metadata.name] = self.runs.get(pod.metadata.name, 0) + 1
            threading.Thread(target=self._play, args=(pod,), daemon=True).start()

    def _kill(self, name: str) -> None:
        with self._lock:
            process = self._processes.get(name)
        if process is not None and process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)

    def _play(self, pod) -> None:
        name = pod.metadata.name
        role = (pod.metadata.labels or {}).get(specs.ROLE)
        try:
            code = self._build(pod) if role == specs.BUILD_ROLE else self._task(pod)
        except Exception as exc:  # noqa: BLE001 - a stand-in mistake shows as the container's failure
            self.logs[name] = f"stand-in: {exc!r}"
            code = 125
        if code is not None:
            with contextlib.suppress(kubernetes.client.ApiException):  # deleted meanwhile
                self.cluster.set_exit_code(self.namespace, name, code)

    @staticmethod
    def _host_root(pod) -> Path:
        [work] = [v for v in pod.spec.volumes if v.name == "work"]
        return Path(work.host_path.path)

    def _build(self, pod) -> int:
        context = self._host_root(pod) / pod.spec.containers[0].volume_mounts[0].sub_path
        found = (context / "Dockerfile").is_file()
        self.logs[pod.metadata.name] = "stand-in kaniko: " + (
            "built" if found else "error: no Dockerfile in the context"
        )
        return 0 if found else 1

    def _task(self, pod) -> int | None:
        root = self._host_root(pod)
        [container] = pod.spec.containers
        mounts = [isolation.Mount(root / specs.context_folder(specs.function_of_image(container.image)), "/workspace")]
        for mount in container.volume_mounts:
            if mount.name == "work":
                mounts.append(isolation.Mount(root / mount.sub_path, mount.mount_path, writable=not mount.read_only))
        command = [*(container.command or []), *(container.args or [])]
        if command and command[0] in PYTHONS:
            command[0] = sys.executable
        uid = pod.spec.security_context.run_as_user
        jail = isolation.Jail(mounts=[*isolation.runtime_mounts(), *mounts], limits=isolation.Limits(), uid=uid)
        jail.cwd = container.working_dir or "/workspace"
        jail.env = {variable.name: variable.value.replace("$$", "$") for variable in container.env or []}
        log = self.folder / f"{pod.metadata.name}.log"
        with open(log, "wb") as out:
            process = subprocess.Popen(
                isolation.argv(jail, isolation.runner_command(uid, *command)),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=isolation.BWRAP_ENV,
                preexec_fn=isolation.child_setup(jail),
            )
        with self._lock:
            self._processes[pod.metadata.name] = process
        code = process.wait()
        self.logs[pod.metadata.name] = log.read_text(errors="replace")
        if code < 0:  # killed: the pod was deleted, there is nobody to tell
            return None
        return code


def _tls(folder: Path) -> ssl.SSLContext:
    """A server context with a throw-away self-signed certificate for 127.0.0.1."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "stand-in-kubelet")])
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    (folder / "kubelet.crt").write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    (folder / "kubelet.key").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(folder / "kubelet.crt", folder / "kubelet.key")
    return context
