"""The Helm charts against a real API server: one network of two organizations, as docs/deploy.md lays it out.

The module installs, in namespaces of its own, the ledger release (`asset`) and each organization's four releases
(`storage`, `compute`, `event`, `gateway`), one namespace per organization as docs/deploy.md recommends, with the
values files of deploy/kubernetes plus an override naming this run's namespaces. The namespaces enforce the
`restricted` Pod Security Standard, so a pod template the API server would refuse fails the install. kwok marks
pods Ready without running them (no container starts: the `tessera` image need not exist), so what is tested is
what the API server, its admission, the controllers and Helm do with the manifests; what the services do in a
real cluster is beyond this tier. The tests read the created objects back through the API.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import json
import os
import shutil
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kubernetes
import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from services.compute.kubernetes import specs
from tools.k8s.cluster import watch_until

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy" / "kubernetes"
SERVICE_CHARTS = ("asset", "storage", "compute", "event", "gateway")
ORG_CHARTS = ("storage", "compute", "event", "gateway")
ORGS = ("org1", "org2")
INSTANCE = "app.kubernetes.io/instance"


# ---- helpers -----------------------------------------------------------------------------------------------


@dataclass
class Helm:
    """The helm the test binaries include, on the test cluster, with its state in a folder of its own."""

    binary: Path
    kubeconfig: Path
    home: Path

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "KUBECONFIG": str(self.kubeconfig),
            "HELM_CACHE_HOME": str(self.home / "cache"),
            "HELM_CONFIG_HOME": str(self.home / "config"),
            "HELM_DATA_HOME": str(self.home / "data"),
        }

    def start(self, *args: str) -> subprocess.Popen:
        return subprocess.Popen(
            [str(self.binary), *args], env=self.env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )

    def run(self, *args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
        done = subprocess.run(
            [str(self.binary), *args], env=self.env(), capture_output=True, text=True, timeout=timeout
        )
        if check and done.returncode != 0:
            raise AssertionError(f"helm {' '.join(args)} exited {done.returncode}:\n{done.stdout}{done.stderr}")
        return done


def _certificate(name: str, issuer: tuple[Any, x509.Certificate] | None = None) -> tuple[Any, x509.Certificate]:
    """A key and certificate for ``name``: a CA when ``issuer`` is None, else signed by it."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    issuer_key, issuer_certificate = issuer or (key, None)
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_certificate.subject if issuer_certificate else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=issuer is None, path_length=None), critical=True)
        .sign(issuer_key, hashes.SHA256())
    )
    return key, certificate


def _tls_secret(name: str, key, certificate: x509.Certificate, ca: x509.Certificate) -> dict:
    pem = serialization.Encoding.PEM
    data = {
        "tls.crt": certificate.public_bytes(pem),
        "tls.key": key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()),
        "ca.crt": ca.public_bytes(pem),
    }
    return _secret(name, data, kind="kubernetes.io/tls")


def _secret(name: str, data: dict[str, bytes | str], kind: str = "Opaque") -> dict:
    encoded = {k: base64.b64encode(v.encode() if isinstance(v, str) else v).decode() for k, v in data.items()}
    return {"metadata": {"name": name}, "type": kind, "data": encoded}


def _as_dict(api: kubernetes.client.ApiClient, obj) -> dict:
    """An API object as the JSON the server sent (camelCase keys), easier to compare than the models."""
    return api.sanitize_for_serialization(obj)


def _selects(selector: dict | None, labels: dict[str, str]) -> bool:
    """Whether a LabelSelector (matchLabels and matchExpressions) selects ``labels``; ``{}`` selects all."""
    selector = selector or {}
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for expression in selector.get("matchExpressions") or []:
        key, operator, values = expression["key"], expression["operator"], expression.get("values") or []
        present = key in labels
        if (
            (operator == "In" and not (present and labels[key] in values))
            or (operator == "NotIn" and present and labels[key] in values)
            or (operator == "Exists" and not present)
            or (operator == "DoesNotExist" and present)
        ):
            return False
    return True


def _remaining(listing, timeout: float, **kwargs) -> list[str]:
    """The names ``listing(**kwargs)`` still lists after waiting up to ``timeout`` s for them to go (a watch)."""
    deadline = time.monotonic() + timeout
    found = listing(**kwargs)
    names = {item.metadata.name for item in found.items}
    watch = kubernetes.watch.Watch()
    while names and (left := deadline - time.monotonic()) > 0:
        for event in watch.stream(
            listing, resource_version=found.metadata.resource_version, timeout_seconds=max(1, int(left)), **kwargs
        ):
            if event["type"] == "DELETED":
                names.discard(event["object"].metadata.name)
            elif event["type"] == "ADDED":
                names.add(event["object"].metadata.name)
            if not names:
                watch.stop()
    return sorted(names)


@dataclass(frozen=True)
class Pod:
    """Where a pod lives and what it carries, as NetworkPolicies see it."""

    namespace: str
    labels: dict[str, str]


# ---- the installed network ---------------------------------------------------------------------------------


@dataclass
class Network:
    """The installed network: its namespaces, the values each release got, and shortcuts to read it back."""

    helm: Helm
    api: kubernetes.client.ApiClient
    charts: Path
    network: str  # namespace of the ledger release
    orgs: dict[str, str]  # organization -> namespace
    overrides: dict[str, Path]  # organization (or "network") -> values file naming this run's namespaces

    @property
    def core(self) -> kubernetes.client.CoreV1Api:
        return kubernetes.client.CoreV1Api(self.api)

    @property
    def apps(self) -> kubernetes.client.AppsV1Api:
        return kubernetes.client.AppsV1Api(self.api)

    def releases(self) -> list[tuple[str, str, str]]:
        """(namespace, release, values owner) of every release: the ledger, then each organization's four."""
        return [(self.network, "asset", "network")] + [
            (self.orgs[org], chart, org) for org in ORGS for chart in ORG_CHARTS
        ]

    def values_args(self, owner: str) -> list[str]:
        values = DEPLOY / ("network.yaml" if owner == "network" else f"{owner}.yaml")
        return ["-f", str(values), "-f", str(self.overrides[owner])]

    def install_args(self, namespace: str, release: str, owner: str) -> list[str]:
        return [
            "install", release, str(self.charts / release), "-n", namespace, *self.values_args(owner),
            "--wait", "--timeout", "60s",
        ]  # fmt: skip

    def deployment(self, namespace: str, release: str) -> dict:
        return _as_dict(self.api, self.apps.read_namespaced_deployment(release, namespace))

    def config(self, namespace: str, release: str) -> dict[str, str]:
        return self.core.read_namespaced_config_map(release, namespace).data

    def pod(self, namespace: str, release: str) -> Pod:
        labels = self.deployment(namespace, release)["spec"]["template"]["metadata"]["labels"]
        return Pod(namespace, labels)


def _install(net: Network, folder: Path, volumes: list[str]) -> Network:
    """Namespaces, the operator's Secrets and volumes, then every release; ``volumes`` collects the
    cluster-wide volumes made, for the caller to delete."""
    core = net.core
    restricted = {f"pod-security.kubernetes.io/{mode}": "restricted" for mode in ("enforce", "warn")}
    for namespace in (net.network, *net.orgs.values()):
        core.create_namespace({"metadata": {"name": namespace, "labels": restricted}})

    # What the operator creates before installing (docs/deploy.md): the database URLs, the certificates, the users.
    ca = _certificate("tessera-network-ca")
    secrets = {
        net.network: [
            _secret("tessera-ledger-database", {"url": "postgresql+psycopg2://ledger:pw@postgres:5432/ledger"}),
            _tls_secret("tessera-asset-tls", *_certificate("asset", ca), ca[1]),
        ]
    }
    for org, namespace in net.orgs.items():
        secrets[namespace] = [
            _secret("tessera-database", {"url": f"postgresql+psycopg2://{org}:pw@postgres:5432/{org}"}),
            _tls_secret(f"tessera-{org}-tls", *_certificate(org, ca), ca[1]),
            _secret("tessera-gateway-users", {"users.json": '{"users": []}'}),
        ]
    for namespace, bodies in secrets.items():
        for body in bodies:
            core.create_namespaced_secret(namespace, body)

    # A volume for each storage claim: the test cluster has no provisioner, the operator's cluster has one.
    for namespace in net.orgs.values():
        volumes.append(_volume(core, f"{namespace}-storage", "ReadWriteOnce", namespace, "storage-data"))

    # Compute's work claim exists before its release (deploy/kubernetes names one the operator provides: shared,
    # ReadWriteMany, with the task pods and build Jobs).
    for namespace in net.orgs.values():
        volumes.append(_volume(core, f"{namespace}-compute-work", "ReadWriteMany", namespace, "tessera-compute-work"))
        core.create_namespaced_persistent_volume_claim(
            namespace,
            {
                "metadata": {"name": "tessera-compute-work"},
                "spec": {
                    "accessModes": ["ReadWriteMany"],
                    "storageClassName": "",
                    "volumeName": volumes[-1],
                    "resources": {"requests": {"storage": "50Gi"}},
                },
            },
        )

    # deploy/kubernetes names the namespaces tessera-network, org1 and org2; this run's have a suffix.
    asset_addr = f"asset.{net.network}.svc.cluster.local:50051"
    nats_url = f"nats://nats.{net.network}.svc.cluster.local:4222"
    net.overrides["network"] = folder / "network.yaml"
    net.overrides["network"].write_text(yaml.safe_dump({"nats": {"url": nats_url}}))
    for org in ORGS:
        peers = ",".join(f"{o}=storage.{net.orgs[o]}.svc.cluster.local:50052" for o in ORGS if o != org)
        net.overrides[org] = folder / f"{org}.yaml"
        net.overrides[org].write_text(
            yaml.safe_dump({"upstreams": {"asset": asset_addr}, "peers": peers, "nats": {"url": nats_url}})
        )

    # Every release at once (each waits for its own Deployment); one failure fails the module.
    started = [(release, namespace, net.helm.start(*net.install_args(namespace, release, owner)))
               for namespace, release, owner in net.releases()]  # fmt: skip
    failures = []
    for release, namespace, process in started:
        output, _ = process.communicate(timeout=120)
        if process.returncode != 0:
            failures.append(f"helm install {release} -n {namespace}: exit {process.returncode}\n{output}")
        elif "would violate PodSecurity" in output:
            failures.append(f"helm install {release} -n {namespace} warns:\n{output}")
    assert not failures, "\n".join(failures)
    return net


@pytest.fixture(scope="module")
def helm(k8s_cluster, tmp_path_factory) -> Helm:
    return Helm(k8s_cluster.bin_dir / "helm", k8s_cluster.kubeconfig, tmp_path_factory.mktemp("helm"))


@pytest.fixture(scope="module")
def charts(helm, tmp_path_factory) -> Path:
    """A copy of charts/ with each service chart's library dependency built, as docs/deploy.md says to do."""
    folder = tmp_path_factory.mktemp("charts") / "charts"
    shutil.copytree(ROOT / "charts", folder, ignore=shutil.ignore_patterns("*.tgz"))
    for chart in SERVICE_CHARTS:
        helm.run("dependency", "build", str(folder / chart))
    return folder


@pytest.fixture(scope="module")
def network(k8s_cluster, helm, charts, tmp_path_factory) -> Network:
    run = uuid.uuid4().hex[:6]
    net = Network(
        helm=helm,
        api=k8s_cluster.api_client(),
        charts=charts,
        network=f"tessera-network-{run}",
        orgs={org: f"{org}-{run}" for org in ORGS},
        overrides={},
    )
    core = net.core
    volumes: list[str] = []
    try:
        yield _install(net, tmp_path_factory.mktemp("values"), volumes)
    finally:
        # Whatever the install got to make; namespace deletion is not awaited (it takes seconds).
        deletions = [(core.delete_persistent_volume, v) for v in volumes]
        deletions += [(core.delete_namespace, ns) for ns in (net.network, *net.orgs.values())]
        for delete, name in deletions:
            with contextlib.suppress(kubernetes.client.ApiException):
                delete(name)
        net.api.close()


# ---- charts on their own ------------------------------------------------------------------------------------


def test_every_chart_lints_strict_with_its_defaults_and_the_deploy_values(helm, charts):
    helm.run("lint", "--strict", str(charts / "tessera-common"))
    for chart in SERVICE_CHARTS:
        helm.run("lint", "--strict", str(charts / chart))
        for values in ("network.yaml",) if chart == "asset" else ("org1.yaml", "org2.yaml"):
            helm.run("lint", "--strict", str(charts / chart), "-f", str(DEPLOY / values))


def test_in_secret_mode_the_ledger_mounts_verifiers_only_and_an_organization_its_own_secret_too(helm, charts):
    """ADR 0014: no namespace is given another organization's secret; the ledger's is given no secret at all."""
    for chart, wanted in (("asset", {"verifiers.json"}), *((c, {"verifiers.json", "secret"}) for c in ORG_CHARTS)):
        rendered = helm.run("template", chart, str(charts / chart), "--set", "auth.mode=secret",
                            "--set", "organization=org1").stdout  # fmt: skip
        documents = [d for d in yaml.safe_load_all(rendered) if d]
        (pod,) = [d["spec"]["template"]["spec"] for d in documents if d["kind"] == "Deployment"]
        (volume,) = [v["secret"] for v in pod["volumes"] if v["name"] == "org-credentials"]
        assert volume["secretName"] == "tessera-org-credentials"
        assert {item["key"] for item in volume["items"]} == wanted, chart
        (config,) = [d["data"] for d in documents if d["kind"] == "ConfigMap"]
        assert config["TESSERA_ORG_VERIFIERS_FILE"] == "/etc/tessera/credentials/verifiers.json"
        own = "/etc/tessera/credentials/secret" if chart != "asset" else None
        assert config.get("TESSERA_ORG_SECRET_FILE") == own


def test_the_charts_share_their_value_names():
    """One name for one thing across the five charts: image, resources, env, secrets, security, scheduling."""
    shared = {
        "image": {"repository", "tag", "pullPolicy"},
        "database": {"existingSecret", "key"},
        "auth": {"mode", "orgCredentials", "tls"},
        "serviceAccount": {"create", "name", "annotations"},
        "podSecurity": {"runAsUser", "runAsGroup", "fsGroup"},
        "resources": {"requests", "limits"},
        "service": {"type", "port", "annotations"},
        "probes": {"startup", "liveness", "readiness"},
        "networkPolicy": {"enabled", "ingressFrom", "egress"},
    }
    flat = {"imagePullSecrets", "extraEnv", "otel", "logLevel", "containerPort", "nats", "tmp", "replicaCount",
            "podLabels", "podAnnotations", "nodeSelector", "tolerations", "affinity", "terminationGracePeriodSeconds",
            "nameOverride", "fullnameOverride"}  # fmt: skip
    for chart in SERVICE_CHARTS:
        values = yaml.safe_load((ROOT / "charts" / chart / "values.yaml").read_text())
        assert flat <= values.keys(), (chart, flat - values.keys())
        for key, inner in shared.items():
            assert set(values[key]) == inner, (chart, key, set(values[key]))


# ---- the installed network ---------------------------------------------------------------------------------


def test_every_release_is_deployed_and_its_deployment_available(network):
    for namespace, release, _owner in network.releases():
        listing = yaml.safe_load(network.helm.run("list", "-n", namespace, "-o", "yaml").stdout)
        assert {"name": release, "status": "deployed"}.items() <= next(
            r for r in listing if r["name"] == release
        ).items()
        status = network.deployment(namespace, release)["status"]
        assert status.get("availableReplicas") == status["replicas"] >= 1, (release, status)
        pods = network.core.list_namespaced_pod(namespace, label_selector=f"{INSTANCE}={release}").items
        assert pods and all(p.status.phase == "Running" for p in pods), release


def test_pods_run_as_non_root_on_a_read_only_root_with_nothing_to_escalate(network):
    for namespace, release, _owner in network.releases():
        pod = network.deployment(namespace, release)["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] == 10001
        (container,) = pod["containers"]
        context = container["securityContext"]
        assert context["readOnlyRootFilesystem"] is True, release
        assert context["allowPrivilegeEscalation"] is False and context["privileged"] is False
        assert context["capabilities"] == {"drop": ["ALL"]}
        assert context["seccompProfile"] == {"type": "RuntimeDefault"}
        assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]  # the one writable path
        assert container["resources"]["limits"] and container["resources"]["requests"]
        # Only compute with the Kubernetes executor (deploy/kubernetes uses it) holds an API token.
        assert pod["automountServiceAccountToken"] is (release == "compute"), release
        account = network.core.read_namespaced_service_account(pod["serviceAccountName"], namespace)
        assert account.automount_service_account_token is (release == "compute")


def test_probes_ask_the_health_port_and_services_expose_the_values_ports(network):
    for namespace, release, owner in network.releases():
        values = yaml.safe_load((ROOT / "charts" / release / "values.yaml").read_text())
        (container,) = network.deployment(namespace, release)["spec"]["template"]["spec"]["containers"]
        ports = {p["name"]: p["containerPort"] for p in container.get("ports", [])}
        config = network.config(namespace, release)
        if release == "gateway":
            assert ports == {"http": 8000} and config["TESSERA_HTTP_ADDR"] == "0.0.0.0:8000"
            # Alive while it answers (/info/ calls no one); ready while every upstream serves (/healthz).
            for probe in ("startupProbe", "livenessProbe"):
                assert container[probe]["httpGet"] == {"path": "/info/", "port": "http", "scheme": "HTTP"}
            assert container["readinessProbe"]["httpGet"] == {"path": "/healthz", "port": "http", "scheme": "HTTP"}
            port_name = "http"
        else:
            health = values.get("healthPort", 8081)  # the library's default (compute's values leave it out)
            assert ports["grpc"] == values["containerPort"] and ports.get("health", health) == health, release
            for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
                assert container[probe]["grpc"]["port"] == health, (release, probe)
            assert config["TESSERA_GRPC_ADDR"] == f"0.0.0.0:{values['containerPort']}"
            assert config["TESSERA_HEALTH_ADDR"] == f"0.0.0.0:{health}"
            port_name = "grpc"
        service = _as_dict(network.api, network.core.read_namespaced_service(release, namespace))
        (port,) = service["spec"]["ports"]
        assert port["port"] == values["service"]["port"] and port["targetPort"] == port_name, release
        assert service["spec"]["selector"] == {"app.kubernetes.io/name": release, INSTANCE: release}
        # The endpoint controller found the ready pods behind the Service, on the port its name points at.
        discovery = kubernetes.client.DiscoveryV1Api(network.api)
        endpoints = watch_until(
            discovery.list_namespaced_endpoint_slice,
            lambda s: any(e.conditions.ready for e in s.endpoints or []),
            10,
            namespace=namespace,
            label_selector=f"kubernetes.io/service-name={release}",
        )
        assert [p.port for p in endpoints.ports] == [ports[port_name]], release
        pods = network.core.list_namespaced_pod(namespace, label_selector=f"{INSTANCE}={release}").items
        assert {e.target_ref.name for e in endpoints.endpoints} == {p.metadata.name for p in pods}
        assert config.get("TESSERA_ORG_ID") == (None if owner == "network" else owner), release


def test_config_maps_hold_only_settings_the_services_read(network):
    """Each key of a release's ConfigMap is a variable its service reads (the organization-wide ones that one
    values file gives all four charts excepted), so a renamed setting cannot silently stop reaching a service."""
    from gateway.settings import GatewaySettings
    from services.asset.settings import AssetSettings
    from services.compute.settings import ComputeSettings
    from services.event.settings import EventSettings
    from services.storage.settings import StorageSettings

    def names(settings) -> set[str]:
        return {field.metadata["env"] for field in settings.__dataclass_fields__.values() if "env" in field.metadata}

    reads = {"asset": AssetSettings, "storage": StorageSettings, "compute": ComputeSettings, "event": EventSettings,
             "gateway": GatewaySettings}  # fmt: skip
    organization_wide = {"TESSERA_PUBLIC_URL", "TESSERA_PEERS", "TESSERA_MODEL_EXPORT_CHANNELS"}
    everyone = set().union(*(names(s) for s in reads.values()))
    assert organization_wide <= everyone
    for namespace, release, _owner in network.releases():
        config = network.config(namespace, release)
        unread = {k for k in config if not k.startswith(("OTEL_", "PYTHON"))} - names(reads[release])
        assert unread <= organization_wide, (release, unread)
        pod = network.deployment(namespace, release)["spec"]["template"]["spec"]
        env = {e["name"]: e for e in pod["containers"][0].get("env", [])}
        # The database URL comes from the operator's Secret, never from the ConfigMap.
        assert "TESSERA_DATABASE_URL" not in config
        reference = env["TESSERA_DATABASE_URL"]["valueFrom"]["secretKeyRef"]
        assert reference["key"] == "url" and reference["name"] in ("tessera-ledger-database", "tessera-database")


def test_every_secret_a_pod_mounts_exists_with_the_keys_it_names(network):
    """The Secret names and keys in deploy/kubernetes match what docs/deploy.md has the operator create."""
    for namespace, release, _owner in network.releases():
        pod = network.deployment(namespace, release)["spec"]["template"]["spec"]
        wanted: list[tuple[str, list[str]]] = [
            (v["secret"]["secretName"], [item["key"] for item in v["secret"].get("items", [])])
            for v in pod["volumes"]
            if "secret" in v
        ]
        for env in pod["containers"][0].get("env", []):
            if reference := (env.get("valueFrom") or {}).get("secretKeyRef"):
                wanted.append((reference["name"], [reference["key"]]))
        assert any(name.endswith("-tls") for name, _ in wanted), release  # mtls, as deploy/kubernetes says
        for name, keys in wanted:
            secret = network.core.read_namespaced_secret(name, namespace)
            assert set(keys) <= set(secret.data), (release, name, keys)


def test_storage_claims_its_volume_and_compute_gets_its_rbac(network):
    for org, namespace in network.orgs.items():
        claim = network.core.read_namespaced_persistent_volume_claim("storage-data", namespace)
        assert claim.status.phase == "Bound" and claim.spec.volume_name == f"{namespace}-storage"
        assert claim.metadata.annotations["helm.sh/resource-policy"] == "keep"
        volume = next(
            v for v in network.deployment(namespace, "storage")["spec"]["template"]["spec"]["volumes"]
            if v["name"] == "data"
        )  # fmt: skip
        assert volume["persistentVolumeClaim"] == {"claimName": "storage-data"}
        assert network.config(namespace, "storage")["TESSERA_STORAGE_ROOT"] == "/var/lib/tessera/storage"

        rbac = kubernetes.client.RbacAuthorizationV1Api(network.api)
        binding = rbac.read_namespaced_role_binding("compute", namespace)
        assert [(s.kind, s.name, s.namespace) for s in binding.subjects] == [("ServiceAccount", "compute", namespace)]
        assert binding.role_ref.kind == "Role" and rbac.read_namespaced_role(binding.role_ref.name, namespace).rules
        assert network.config(namespace, "compute")["TESSERA_EXECUTOR"] == "kubernetes", org


def test_the_namespaces_refuse_a_pod_that_is_not_hardened(network):
    """What makes the installs above meaningful: the API server enforces `restricted` there. Here one value
    (root) is enough for every pod of the release to be refused."""
    namespace = f"{network.network}-refused"
    network.core.create_namespace(
        {"metadata": {"name": namespace, "labels": {"pod-security.kubernetes.io/enforce": "restricted"}}}
    )
    try:
        network.helm.run(
            "install", "event", str(network.charts / "event"), "-n", namespace, *network.values_args("org1"),
            "--set", "podSecurity.runAsUser=0",
        )  # fmt: skip
        refused = watch_until(
            network.apps.list_namespaced_replica_set,
            lambda rs: any(c.type == "ReplicaFailure" for c in rs.status.conditions or []),
            30,
            namespace=namespace,
        )
        (condition,) = refused.status.conditions
        assert "violates PodSecurity" in condition.message and "runAsUser=0" in condition.message
        assert network.core.list_namespaced_pod(namespace).items == []
    finally:
        network.core.delete_namespace(namespace)


# ---- two organizations side by side: who may call whom --------------------------------------------------


def _admits(network: Network, caller: Pod, callee: Pod, port: int) -> bool:
    """Whether the NetworkPolicies stored in the API let ``caller`` open ``port`` on ``callee``: the callee's
    ingress and the caller's egress must both allow it (a side no policy selects allows everything)."""
    networking = kubernetes.client.NetworkingV1Api(network.api)
    namespace_labels = {
        ns: network.core.read_namespace(ns).metadata.labels or {} for ns in {caller.namespace, callee.namespace}
    }

    def peer_matches(peer: dict, pod: Pod, policy_namespace: str) -> bool:
        if "ipBlock" in peer:
            return False
        if "namespaceSelector" in peer:
            if not _selects(peer["namespaceSelector"], namespace_labels[pod.namespace]):
                return False
        elif pod.namespace != policy_namespace:
            return False
        return _selects(peer.get("podSelector"), pod.labels)

    def allowed(subject: Pod, other: Pod, direction: str) -> bool:
        policies = [
            _as_dict(network.api, p) for p in networking.list_namespaced_network_policy(subject.namespace).items
        ]
        selecting = [
            p["spec"]
            for p in policies
            if direction in p["spec"].get("policyTypes", ["Ingress"])
            and _selects(p["spec"]["podSelector"], subject.labels)
        ]
        if not selecting:
            return True
        rules_key, peers_key = ("ingress", "from") if direction == "Ingress" else ("egress", "to")
        for policy in selecting:
            for rule in policy.get(rules_key) or []:
                ports = rule.get("ports")
                if ports and direction == "Ingress" and not any(p.get("port") in (port, None) for p in ports):
                    continue
                peers = rule.get(peers_key)
                if not peers or any(peer_matches(peer, other, subject.namespace) for peer in peers):
                    return True
        return False

    return allowed(callee, caller, "Ingress") and allowed(caller, callee, "Egress")


def _resolve(network: Network, address: str, caller_namespace: str) -> tuple[str, str, int]:
    """(namespace, release, container port) behind ``host:port`` as cluster DNS would resolve it."""
    host, _, port = address.rpartition(":")
    name, _, rest = host.partition(".")
    namespace = rest.split(".")[0] if rest else caller_namespace
    service = _as_dict(network.api, network.core.read_namespaced_service(name, namespace))
    (service_port,) = [p for p in service["spec"]["ports"] if p["port"] == int(port)]
    (container,) = network.deployment(namespace, service["spec"]["selector"][INSTANCE])["spec"]["template"]["spec"][
        "containers"
    ]
    (target,) = [p["containerPort"] for p in container["ports"] if p["name"] == service_port["targetPort"]]
    return namespace, service["spec"]["selector"][INSTANCE], target


def test_network_policies_admit_every_call_the_configuration_makes(network):
    """Every <NAME>_ADDR and TESSERA_PEERS address of every release, followed to the pods behind it."""
    calls = []
    for namespace, release, _owner in network.releases():
        config = network.config(namespace, release)
        addresses = [v for k, v in config.items() if k.endswith("_ADDR") and k not in ("TESSERA_GRPC_ADDR",
                     "TESSERA_HEALTH_ADDR", "TESSERA_HTTP_ADDR")]  # fmt: skip
        if release in ("compute", "gateway"):  # the services that call their peers' storage
            addresses += [part.partition("=")[2] for part in config.get("TESSERA_PEERS", "").split(",") if part]
        for address in addresses:
            callee_namespace, callee, port = _resolve(network, address, namespace)
            caller_pod, callee_pod = network.pod(namespace, release), network.pod(callee_namespace, callee)
            calls.append((f"{release}@{namespace} -> {callee}@{callee_namespace}:{port}", caller_pod, callee_pod, port))
    # Per organization: storage 1 (asset), compute 2 + 1 peer, event 3, gateway 4 + 1 peer.
    assert len(calls) == 2 * (1 + 3 + 3 + 5), [name for name, *_ in calls]
    refused = [name for name, caller, callee, port in calls if not _admits(network, caller, callee, port)]
    assert not refused, refused


def test_one_organization_cannot_reach_the_others_private_services(network):
    org1, org2 = network.orgs["org1"], network.orgs["org2"]
    gateway2, compute2 = network.pod(org2, "gateway"), network.pod(org2, "compute")
    for release, service_port in (("compute", 50053), ("event", 50054)):
        _, _, port = _resolve(network, f"{release}.{org1}:{service_port}", org2)
        assert not _admits(network, gateway2, network.pod(org1, release), port), release
        assert not _admits(network, compute2, network.pod(org1, release), port), release
    # The helm test pod may call its gateway, and nothing behind it.
    test_pod = Pod(org1, {"app.kubernetes.io/component": "helm-test", INSTANCE: "gateway"})
    assert _admits(network, test_pod, network.pod(org1, "gateway"), 8000)
    assert not _admits(network, test_pod, network.pod(org1, "storage"), 50052)
    # A task pod reaches nothing, not even its own storage, once compute has created its deny-all policy (compute
    # makes it at start, not the chart: tests/k8s/test_executor.py); here the same object, from the same builder.
    networking = kubernetes.client.NetworkingV1Api(network.api)
    networking.create_namespaced_network_policy(org1, specs.deny_all_policy(org1))
    task = Pod(org1, {specs.ROLE: specs.TASK_ROLE, "app.kubernetes.io/part-of": "tessera"})
    try:
        assert not _admits(network, task, network.pod(org1, "storage"), 50052)
        assert not _admits(network, task, network.pod(network.network, "asset"), 50051)
    finally:
        networking.delete_namespaced_network_policy(specs.NETWORK_POLICY, org1)
    # Releases carry their organization, so two organizations' objects never mix.
    for org, namespace in network.orgs.items():
        for release in ORG_CHARTS:
            assert network.pod(namespace, release).labels["tessera.io/organization"] == org


# ---- helm test, upgrade, uninstall --------------------------------------------------------------------------


def _helm_test(network: Network, k8s_cluster, namespace: str, exit_code: int) -> subprocess.CompletedProcess:
    """``helm test gateway`` while this test plays the test pod's container: it ends with ``exit_code``."""
    process = network.helm.start("test", "gateway", "-n", namespace, "--timeout", "30s")
    try:
        watch_until(
            network.core.list_namespaced_pod,
            lambda pod: pod.status.phase == "Running",
            30,
            namespace=namespace,
            field_selector="metadata.name=gateway-test-health",
        )
        k8s_cluster.set_exit_code(namespace, "gateway-test-health", exit_code)
        output, _ = process.communicate(timeout=40)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    return subprocess.CompletedProcess(process.args, process.returncode, output)


def test_helm_test_passes_when_the_health_pod_succeeds_and_fails_when_it_fails(network, k8s_cluster):
    namespace = network.orgs["org1"]
    passed = _helm_test(network, k8s_cluster, namespace, 0)
    assert passed.returncode == 0 and "gateway-test-health" in passed.stdout, passed.stdout
    assert "Succeeded" in passed.stdout
    failed = _helm_test(network, k8s_cluster, namespace, 1)
    assert failed.returncode != 0, failed.stdout
    pod = network.core.read_namespaced_pod("gateway-test-health", namespace)  # kept for its logs
    assert pod.status.phase == "Failed"
    spec = _as_dict(network.api, pod)["spec"]
    assert spec["automountServiceAccountToken"] is False
    assert spec["containers"][0]["command"][-1] == "http://gateway:8000/healthz"


def test_an_upgrade_with_a_changed_value_rolls_the_deployment(network):
    namespace = network.orgs["org1"]
    before = network.deployment(namespace, "event")
    old_hash = before["spec"]["template"]["metadata"]["annotations"]["checksum/config"]
    network.helm.run(
        "upgrade", "event", str(network.charts / "event"), "-n", namespace, *network.values_args("org1"),
        "--set", "logLevel=DEBUG", "--wait", "--timeout", "60s",
    )  # fmt: skip
    assert network.config(namespace, "event")["TESSERA_LOG_LEVEL"] == "DEBUG"
    after = network.deployment(namespace, "event")
    assert after["spec"]["template"]["metadata"]["annotations"]["checksum/config"] != old_hash
    assert after["metadata"]["generation"] > before["metadata"]["generation"]
    assert after["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "2"
    sets = network.apps.list_namespaced_replica_set(namespace, label_selector=f"{INSTANCE}=event").items
    current = {s.metadata.annotations["deployment.kubernetes.io/revision"]: s for s in sets}
    assert current["2"].status.ready_replicas == 1 and current["1"].spec.replicas == 0
    assert after["status"]["updatedReplicas"] == after["status"]["availableReplicas"] == 1
    history = yaml.safe_load(network.helm.run("history", "event", "-n", namespace, "-o", "yaml").stdout)
    assert [h["status"] for h in history] == ["superseded", "deployed"]


def test_uninstall_removes_everything_but_the_kept_storage_claim(network):
    """Last test of the module: it removes organization 2."""
    namespace = network.orgs["org2"]
    for release in ORG_CHARTS:
        network.helm.run("uninstall", release, "-n", namespace, "--wait", "--timeout", "60s")
    assert yaml.safe_load(network.helm.run("list", "-n", namespace, "-a", "-o", "yaml").stdout) == []
    selector = f"{INSTANCE} in (storage,compute,event,gateway)"
    apps, core = network.apps, network.core
    networking = kubernetes.client.NetworkingV1Api(network.api)
    rbac = kubernetes.client.RbacAuthorizationV1Api(network.api)
    listings = {
        "deployments": apps.list_namespaced_deployment,
        "services": core.list_namespaced_service,
        "config maps": core.list_namespaced_config_map,
        "service accounts": core.list_namespaced_service_account,
        "network policies": networking.list_namespaced_network_policy,
        "ingresses": networking.list_namespaced_ingress,
        "roles": rbac.list_namespaced_role,
        "role bindings": rbac.list_namespaced_role_binding,
    }
    for kind, listing in listings.items():
        assert [o.metadata.name for o in listing(namespace, label_selector=selector).items] == [], kind
    # Helm's own release records are gone; the operator's Secrets stay.
    assert core.list_namespaced_secret(namespace, label_selector="owner=helm").items == []
    assert {s.metadata.name for s in core.list_namespaced_secret(namespace).items} >= {
        "tessera-database", "tessera-gateway-users", "tessera-org2-tls",
    }  # fmt: skip
    # The pods go with their ReplicaSets (garbage collection, moments later).
    assert _remaining(core.list_namespaced_pod, 30, namespace=namespace, label_selector=selector) == []
    # The files outlive the release (persistence.keep): a reinstall finds them.
    claim = core.read_namespaced_persistent_volume_claim("storage-data", namespace)
    assert claim.status.phase == "Bound"
    # Organization 1 is untouched.
    for release in ORG_CHARTS:
        assert network.deployment(network.orgs["org1"], release)["status"].get("availableReplicas") == 1


def test_the_local_executor_variant_is_accepted_with_its_own_user_namespace(network, k8s_cluster):
    """compute with executor.type=local: bwrap needs seccomp Unconfined and an unmasked /proc, which Kubernetes allows
    only in a pod with a user namespace of its own (hostUsers: false); the API server accepts that pod spec."""
    namespace = k8s_cluster.new_namespace("local-exec")  # no Pod Security label: the privileged level
    org1 = network.orgs["org1"]
    args = [a for a in network.install_args(org1, "compute", "org1") if a not in ("--wait", "--timeout", "60s")]
    args[args.index("-n") + 1] = namespace
    done = network.helm.run(
        *args, "--set", "executor.type=local", "--dry-run=server", "--output", "json", check=False, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr
    manifest = yaml.safe_load_all(json.loads(done.stdout)["manifest"])
    deployment = next(d for d in manifest if d and d["kind"] == "Deployment")
    spec = deployment["spec"]["template"]["spec"]
    assert spec["hostUsers"] is False
    context = spec["containers"][0]["securityContext"]
    assert context["procMount"] == "Unmasked" and context["seccompProfile"] == {"type": "Unconfined"}
    assert context["runAsNonRoot"] is True and context["capabilities"] == {"drop": ["ALL"]}


def _volume(core, name: str, access: str, namespace: str, claim: str) -> str:
    """A host-path volume bound ahead to ``namespace``'s claim ``claim``; returns its name."""
    core.create_persistent_volume(
        {
            "metadata": {"name": name},
            "spec": {
                "capacity": {"storage": "50Gi"},
                "accessModes": [access],
                "storageClassName": "",
                "hostPath": {"path": f"/var/lib/tessera-test/{name}"},
                "claimRef": {"namespace": namespace, "name": claim},
            },
        }
    )
    return name
