"""Production identity mode: mutual TLS, the organization named by the client certificate."""

from __future__ import annotations

import datetime as dt
import ipaddress

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from grpc_health.v1 import health_pb2, health_pb2_grpc
from tessera.asset.v1 import asset_service_pb2 as api
from tessera.asset.v1 import asset_service_pb2_grpc as api_grpc

from services.asset.bootstrap import build
from services.asset.settings import AssetSettings
from services.kit.client import sync_channel
from services.kit.identity import OrgCredentials
from tests.support import ServerThread


def _pem(key) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


class _CA:
    """A throw-away certificate authority."""

    def __init__(self, name: str) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = dt.datetime.now(dt.UTC)
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=1))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(self.key, hashes.SHA256())
        )

    @property
    def pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def issue(self, common_name: str, server: bool = False) -> tuple[bytes, bytes]:
        key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.UTC)
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=1))
            .not_valid_after(now + dt.timedelta(days=1))
        )
        if server:
            builder = builder.add_extension(
                x509.SubjectAlternativeName(
                    [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
                ),
                critical=False,
            )
        cert = builder.sign(self.key, hashes.SHA256())
        return _pem(key), cert.public_bytes(serialization.Encoding.PEM)


@pytest.fixture(scope="module")
def tls_ledger(postgres, tmp_path_factory):
    from services.kit.db import ensure_database

    ca = _CA("tessera-test-ca")
    folder = tmp_path_factory.mktemp("tls")
    key, cert = ca.issue("asset", server=True)
    (folder / "server.key").write_bytes(key)
    (folder / "server.crt").write_bytes(cert)
    (folder / "ca.crt").write_bytes(ca.pem)
    url = postgres.url("mtls")
    ensure_database(url)
    settings = AssetSettings(
        grpc_addr="127.0.0.1:0",
        database_url=url,
        auth_mode="mtls",
        tls_cert=str(folder / "server.crt"),
        tls_key=str(folder / "server.key"),
        tls_ca=str(folder / "ca.crt"),
        channels="mychannel=org1,org2",
        health_addr="127.0.0.1:0",
    )
    with ServerThread(lambda: build(settings)) as server:
        yield server, ca


def _stub(addr: str, key: bytes, cert: bytes, ca_pem: bytes, org: str):
    creds = OrgCredentials(org_id=org, tls_key=key, tls_cert=cert, tls_ca=ca_pem)
    return api_grpc.AssetServiceStub(sync_channel(addr, creds))


def test_the_organization_is_the_certificate_common_name(tls_ledger):
    server, ca = tls_ledger
    key, cert = ca.issue("org2")
    # The org_id the client claims locally is irrelevant: only the certificate counts.
    reply = _stub(server.addr, key, cert, ca.pem, org="org1").RegisterOrganization(api.RegisterOrganizationRequest())
    assert reply.organization.id == "org2"


def test_a_certificate_from_another_authority_is_refused(tls_ledger):
    server, ca = tls_ledger
    key, cert = _CA("intruder-ca").issue("org1")
    with pytest.raises(grpc.RpcError) as info:
        _stub(server.addr, key, cert, ca.pem, org="org1").ListOrganizations(api.ListOrganizationsRequest(), timeout=5)
    assert info.value.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.UNAUTHENTICATED)


def test_a_certified_organization_outside_every_channel_is_denied(tls_ledger):
    server, ca = tls_ledger
    key, cert = ca.issue("stranger")
    with pytest.raises(grpc.RpcError) as info:
        _stub(server.addr, key, cert, ca.pem, org="stranger").ListOrganizations(api.ListOrganizationsRequest())
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED


def test_probes_without_a_certificate_reach_only_the_plaintext_health_server(tls_ledger):
    # What the kubelet's gRPC probe does: a plaintext Health/Check, no client certificate.
    server, _ca = tls_ledger
    request = health_pb2.HealthCheckRequest(service="tessera.asset.v1.AssetService")
    with grpc.insecure_channel(f"127.0.0.1:{server.server.health_port}") as channel:
        assert (
            health_pb2_grpc.HealthStub(channel).Check(request, timeout=5).status
            == health_pb2.HealthCheckResponse.SERVING
        )
        with pytest.raises(grpc.RpcError) as info:  # the health server serves nothing else
            api_grpc.AssetServiceStub(channel).ListOrganizations(api.ListOrganizationsRequest(), timeout=5)
        assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED
    with grpc.insecure_channel(server.addr) as channel, pytest.raises(grpc.RpcError) as info:
        health_pb2_grpc.HealthStub(channel).Check(request, timeout=5)  # the service port wants TLS
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
