"""A real Kubernetes control plane on 127.0.0.1 for the tests, with kwok standing in for the kubelets.

``Cluster`` runs etcd (data on /dev/shm, no fsync), kube-apiserver, kube-scheduler, kube-controller-manager and
kwok from the binaries ``tools.k8s.build`` caches, on free loopback ports, with a PKI made here at start.
The API server, its admission, RBAC, the scheduler and the controllers are the real ones; kwok only moves nodes
and pods through their statuses. A pod runs no container: it turns Running once bound, and ends when it
carries the ``tessera.dev/exit-code`` annotation (``set_exit_code``), Succeeded for 0, Failed otherwise.

    with Cluster() as cluster:
        api = kubernetes.client.CoreV1Api(cluster.api_client())
"""

from __future__ import annotations

import contextlib
import ctypes
import datetime as dt
import hashlib
import ipaddress
import os
import shutil
import signal
import ssl
import subprocess
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import kubernetes
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import serialization as ser
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tools.devnet.embedded import free_port_block, stop_process, wait_for_port
from tools.k8s import build

EXIT_CODE_ANNOTATION = "tessera.dev/exit-code"
NODE_NAME = "kwok-node-0"
# What the fake node offers the scheduler (one fake GPU kind included, for pods that request one).
NODE_CAPACITY = {"cpu": "32", "memory": "128Gi", "pods": "250", "nvidia.com/gpu": "4"}
OUR_STAGES = Path(__file__).with_name("tessera-stages.yaml")


def _die_with_parent() -> None:  # in the child, between fork and exec: no orphan if the test run is killed
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    signal.pthread_sigmask(signal.SIG_SETMASK, [])  # a parent's blocked signals would otherwise stay blocked


def watch_until(list_function: Callable, predicate: Callable[[Any], bool], timeout: float, **kwargs) -> Any:
    """The first object ``list_function(**kwargs)`` lists, now or later, for which ``predicate`` is true.

    Lists once, then watches from that list's resourceVersion (no polling); TimeoutError after ``timeout``.
    E.g. ``watch_until(core.list_namespaced_pod, lambda p: p.status.phase == "Succeeded", 30,
    namespace=ns, field_selector=f"metadata.name={name}")``.
    """
    deadline = time.monotonic() + timeout
    listing = list_function(**kwargs)
    for item in listing.items:
        if predicate(item):
            return item
    version = listing.metadata.resource_version
    watch = kubernetes.watch.Watch()
    while (left := deadline - time.monotonic()) > 0:
        try:
            for event in watch.stream(
                list_function, resource_version=version, timeout_seconds=max(1, int(left)), **kwargs
            ):
                version = event["object"].metadata.resource_version
                if event["type"] in ("ADDED", "MODIFIED") and predicate(event["object"]):
                    watch.stop()
                    return event["object"]
        except kubernetes.client.ApiException as error:
            if error.status != 410:  # 410 Gone: the version is too old; list again
                raise
            return watch_until(list_function, predicate, max(0.0, deadline - time.monotonic()), **kwargs)
    raise TimeoutError(f"{getattr(list_function, '__name__', list_function)}({kwargs}): not there after {timeout}s")


def _name(common: str, organization: str | None = None) -> x509.Name:
    parts = [x509.NameAttribute(NameOID.COMMON_NAME, common)]
    if organization:
        parts.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    return x509.Name(parts)


def _issue(subject, key, issuer, issuer_key, *, ca=False, usage=None, san=None) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=7))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True
        )
    if usage:
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    if san:
        builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _make_pki(folder: Path) -> None:
    """CA, API server certificate for 127.0.0.1, admin client certificate (system:masters), service-account keys."""

    def key():
        return ec.generate_private_key(ec.SECP256R1())

    def private(k) -> bytes:
        return k.private_bytes(ser.Encoding.PEM, ser.PrivateFormat.PKCS8, ser.NoEncryption())

    def pem(certificate) -> bytes:
        return certificate.public_bytes(ser.Encoding.PEM)

    ca_key, server_key, admin_key, sa_key = key(), key(), key(), key()
    ca = _issue(_name("tessera-test-ca"), ca_key, _name("tessera-test-ca"), ca_key, ca=True)
    server_names = [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
    server = _issue(
        _name("kube-apiserver"), server_key, ca.subject, ca_key, usage=ExtendedKeyUsageOID.SERVER_AUTH, san=server_names
    )
    admin = _issue(
        _name("tessera-test-admin", "system:masters"), admin_key, ca.subject, ca_key,
        usage=ExtendedKeyUsageOID.CLIENT_AUTH,
    )  # fmt: skip
    files = {
        "ca.crt": pem(ca),
        "server.crt": pem(server),
        "server.key": private(server_key),
        "admin.crt": pem(admin),
        "admin.key": private(admin_key),
        "sa.key": private(sa_key),  # signs service-account tokens (apiserver, controller-manager)
        "sa.pub": sa_key.public_key().public_bytes(ser.Encoding.PEM, ser.PublicFormat.SubjectPublicKeyInfo),
    }
    for name, content in files.items():
        (folder / name).write_bytes(content)
        (folder / name).chmod(0o600)


class Cluster:
    """etcd, kube-apiserver, kube-scheduler, kube-controller-manager and kwok for one test session."""

    def __init__(self, state_dir: Path | None = None, *, bin_dir: Path | None = None) -> None:
        found = bin_dir or build.installed()
        if found is None:
            raise FileNotFoundError(f"Kubernetes test binaries not built in {build.home()}: run `make k8s-tools`")
        self.bin_dir = Path(found)
        self._own_state_dir = state_dir is None  # removed at stop; a given folder is kept (its logs)
        self.state_dir = Path(state_dir or tempfile.mkdtemp(prefix="tessera-k8s-"))
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.ca_file = self.state_dir / "ca.crt"
        self.kubeconfig = self.state_dir / "admin.kubeconfig"
        # Ports from a block below the ephemeral range: a port picked there is not taken meanwhile by some
        # process's outgoing connection (it happened to etcd's with ports from the ephemeral range).
        self._ports = iter(range(base := free_port_block(span=10), base + 10))
        self.port = next(self._ports)
        self.server = f"https://127.0.0.1:{self.port}"
        self._etcd_data: Path | None = None
        self._processes: list[tuple[str, subprocess.Popen]] = []

    def __enter__(self) -> Cluster:
        self.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()

    # ---- what tests use -------------------------------------------------------------------------------

    def api_client(self) -> kubernetes.client.ApiClient:
        """A new client authenticated as cluster admin (system:masters bypasses RBAC)."""
        return kubernetes.config.new_client_from_config(config_file=str(self.kubeconfig))

    def token_for(self, namespace: str, service_account: str, *, seconds: int = 3600) -> str:
        """A token of that ServiceAccount, from the TokenRequest API."""
        body = kubernetes.client.AuthenticationV1TokenRequest(
            spec=kubernetes.client.V1TokenRequestSpec(audiences=[], expiration_seconds=seconds)
        )
        with self.api_client() as api:
            core = kubernetes.client.CoreV1Api(api)
            return core.create_namespaced_service_account_token(service_account, namespace, body).status.token

    def kubeconfig_for_token(self, token: str) -> Path:
        """A kubeconfig file that authenticates with ``token`` (e.g. from ``token_for``); RBAC applies."""
        path = self.state_dir / f"token-{hashlib.sha256(token.encode()).hexdigest()[:12]}.kubeconfig"
        self._write_kubeconfig(path, {"token": token})
        return path

    def set_exit_code(self, namespace: str, pod: str, code: int) -> None:
        """Let the pod's "container" end with ``code``: kwok then moves the Running pod to Succeeded or Failed."""
        with self.api_client() as api:
            kubernetes.client.CoreV1Api(api).patch_namespaced_pod(
                pod, namespace, {"metadata": {"annotations": {EXIT_CODE_ANNOTATION: str(int(code))}}}
            )

    def new_namespace(self, prefix: str = "t") -> str:
        """Create a namespace with a unique name and wait for its default ServiceAccount (pods need it)."""
        name = f"{prefix}-{uuid.uuid4().hex[:8]}"
        with self.api_client() as api:
            core = kubernetes.client.CoreV1Api(api)
            core.create_namespace({"metadata": {"name": name}})
            self._wait_service_account(core, name, timeout=30)
        return name

    # ---- start and stop --------------------------------------------------------------------------------

    def start(self, timeout: float = 90) -> None:
        """Start everything and return once the API is ready, the fake node Ready and `default/default` exists."""
        deadline = time.monotonic() + timeout
        try:
            self._start(deadline)
        except BaseException:
            self.stop()
            raise

    def _start(self, deadline: float) -> None:
        _make_pki(self.state_dir)
        self._write_kubeconfig(
            self.kubeconfig,
            {"client-certificate": str(self.state_dir / "admin.crt"), "client-key": str(self.state_dir / "admin.key")},
        )
        self._etcd_data = self._fresh_etcd_dir()
        client, peer = next(self._ports), next(self._ports)
        # fmt: off
        self._spawn("etcd", [
            "--name=t", f"--data-dir={self._etcd_data}", "--unsafe-no-fsync",
            f"--listen-client-urls=http://127.0.0.1:{client}", f"--advertise-client-urls=http://127.0.0.1:{client}",
            f"--listen-peer-urls=http://127.0.0.1:{peer}", f"--initial-advertise-peer-urls=http://127.0.0.1:{peer}",
            f"--initial-cluster=t=http://127.0.0.1:{peer}", "--log-level=warn",
        ])
        wait_for_port("127.0.0.1", client, deadline - time.monotonic(), self._processes[-1][1])
        d = self.state_dir
        self._spawn("kube-apiserver", [
            f"--etcd-servers=http://127.0.0.1:{client}", "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1",
            f"--secure-port={self.port}", f"--tls-cert-file={d}/server.crt", f"--tls-private-key-file={d}/server.key",
            f"--client-ca-file={d}/ca.crt", "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={d}/sa.pub", f"--service-account-signing-key-file={d}/sa.key",
            "--authorization-mode=Node,RBAC", "--service-cluster-ip-range=10.96.0.0/16", "--allow-privileged=true",
            "--profiling=false",
        ])
        self._wait_ready(deadline)
        common = [f"--kubeconfig={self.kubeconfig}", "--leader-elect=false", "--secure-port=0", "--profiling=false"]
        self._spawn("kube-scheduler", common)
        self._spawn("kube-controller-manager", [
            *common, f"--root-ca-file={d}/ca.crt", f"--service-account-private-key-file={d}/sa.key",
        ])
        stages = [*sorted((self.bin_dir.parent / "stages").glob("*.yaml")), OUR_STAGES]
        (d / "kwok-stages.yaml").write_text("\n---\n".join(path.read_text() for path in stages))
        self._spawn("kwok", [
            f"--kubeconfig={self.kubeconfig}", f"--config={d}/kwok-stages.yaml", "--manage-all-nodes=true",
            # renew the node's Lease like a kubelet, else the node lifecycle controller marks it NotReady
            # after 50 s, taints it and marks its pods not ready; pod IPs are fake, outside the service range
            "--node-lease-duration-seconds=40", "--cidr=10.244.0.0/16",
        ])
        # fmt: on
        with self.api_client() as api:
            core = kubernetes.client.CoreV1Api(api)
            labels = {"kubernetes.io/hostname": NODE_NAME, "kubernetes.io/os": "linux", "type": "kwok"}
            core.create_node({"metadata": {"name": NODE_NAME, "labels": labels}})
            core.patch_node_status(NODE_NAME, {"status": {"capacity": NODE_CAPACITY, "allocatable": NODE_CAPACITY}})
            watch_until(
                core.list_node,
                lambda node: any(c.type == "Ready" and c.status == "True" for c in node.status.conditions or []),
                self._left(deadline),
                field_selector=f"metadata.name={NODE_NAME}",
            )
            self._wait_service_account(core, "default", timeout=self._left(deadline))

    def stop(self) -> None:
        """Stop every process (etcd last: the API server hangs when etcd goes first) and drop etcd's data."""
        for _name, process in reversed(self._processes):
            stop_process(process, timeout=10)
        self._processes.clear()
        if self._etcd_data is not None:
            shutil.rmtree(self._etcd_data, ignore_errors=True)
            self._etcd_data = None
        if self._own_state_dir:
            shutil.rmtree(self.state_dir, ignore_errors=True)

    # ---- helpers ---------------------------------------------------------------------------------------

    def _left(self, deadline: float) -> float:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"the cluster did not start in time; logs in {self.state_dir}")
        return left

    @staticmethod
    def _fresh_etcd_dir() -> Path:
        """A folder in /dev/shm named after this process; those of dead processes (killed runs) are removed."""
        shm = Path("/dev/shm") if Path("/dev/shm").is_dir() else Path(tempfile.gettempdir())
        for stale in shm.glob("tessera-etcd-*-*"):
            pid = stale.name.split("-")[2]
            if pid.isdigit() and not Path(f"/proc/{pid}").exists():
                shutil.rmtree(stale, ignore_errors=True)
        return Path(tempfile.mkdtemp(prefix=f"tessera-etcd-{os.getpid()}-", dir=shm))

    def _spawn(self, name: str, arguments: list[str]) -> None:
        with open(self.state_dir / f"{name}.log", "ab") as log:
            process = subprocess.Popen(
                [str(self.bin_dir / name), *arguments],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.state_dir,
                preexec_fn=_die_with_parent,
            )
        self._processes.append((name, process))

    def _check_alive(self) -> None:
        for name, process in self._processes:
            if process.poll() is not None:
                log = (self.state_dir / f"{name}.log").read_text(errors="replace")[-3000:]
                raise RuntimeError(f"{name} exited with {process.returncode}:\n{log}")

    def _wait_ready(self, deadline: float) -> None:
        """Poll the API server's /readyz (a health probe: there is nothing to watch yet)."""
        context = ssl.create_default_context(cafile=str(self.ca_file))
        context.load_cert_chain(self.state_dir / "admin.crt", self.state_dir / "admin.key")
        while True:
            self._check_alive()
            with (
                contextlib.suppress(OSError),
                urllib.request.urlopen(f"{self.server}/readyz", context=context, timeout=2) as answer,
            ):
                if answer.status == 200:
                    return
            self._left(deadline)
            time.sleep(0.1)

    def _wait_service_account(self, core, namespace: str, timeout: float) -> None:
        watch_until(
            core.list_namespaced_service_account,
            lambda account: True,
            timeout,
            namespace=namespace,
            field_selector="metadata.name=default",
        )

    def _write_kubeconfig(self, path: Path, user: dict[str, str]) -> None:
        cluster = {"server": self.server, "certificate-authority": str(self.ca_file)}
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "current-context": "tessera-test",
            "clusters": [{"name": "tessera-test", "cluster": cluster}],
            "users": [{"name": "user", "user": user}],
            "contexts": [{"name": "tessera-test", "context": {"cluster": "tessera-test", "user": "user"}}],
        }
        path.write_text(yaml.safe_dump(config))
        path.chmod(0o600)
