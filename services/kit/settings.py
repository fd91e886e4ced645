"""Typed settings read from environment variables (12-factor).

Every service describes its configuration as a frozen dataclass whose fields carry their
environment variable name and a help text; :func:`load` fills it from ``os.environ`` and
reports every missing or malformed variable at once, so a bad deployment fails at start with
one clear message instead of at the first request.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from collections.abc import Mapping
from typing import Any, TypeVar

from services.kit.identity import Channels

T = TypeVar("T")


class SettingsError(ValueError):
    """Raised when environment variables are missing or cannot be parsed."""


def env(name: str, default: Any = dataclasses.MISSING, help: str = "") -> Any:  # noqa: A002 - mirrors argparse
    """Declare a settings field read from the environment variable ``name``."""
    kwargs: dict[str, Any] = {"metadata": {"env": name, "help": help}}
    if default is not dataclasses.MISSING:
        kwargs["default"] = default
    return dataclasses.field(**kwargs)


def _parse(raw: str, kind: Any) -> Any:
    origin = typing.get_origin(kind)
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in typing.get_args(kind) if a is not type(None)]
        return None if raw == "" else _parse(raw, inner[0])
    if kind is bool:
        lowered = raw.strip().lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off", ""):
            return False
        raise ValueError(f"expected a boolean, got {raw!r}")
    if kind is int:
        return int(raw)
    if kind is float:
        return float(raw)
    if kind is tuple or origin is tuple:
        return tuple(part.strip() for part in raw.split(",") if part.strip())
    return raw


def load(cls: type[T], environ: Mapping[str, str] | None = None) -> T:
    """Build ``cls`` from ``environ`` (default ``os.environ``), naming every problem found."""
    environ = os.environ if environ is None else environ
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    problems: list[str] = []
    for field in dataclasses.fields(cls):  # type: ignore[arg-type]
        name = field.metadata.get("env")
        if name is None:
            continue
        if name not in environ:
            if field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
                problems.append(f"{name} is required ({field.metadata.get('help', '')})")
            continue
        try:
            values[field.name] = _parse(environ[name], hints[field.name])
        except ValueError as exc:
            problems.append(f"{name}: {exc}")
    if problems:
        raise SettingsError("invalid configuration: " + "; ".join(problems))
    return cls(**values)


def parse_peers(spec: str, own_org: str = "", own_addr: str = "") -> dict[str, str]:
    """``'org2=host:port,org3=host:port'`` as a dict, with this organization's own address added."""
    peers = {}
    for part in spec.split(","):
        org, _, addr = part.partition("=")
        if org.strip() and addr.strip():
            peers[org.strip()] = addr.strip()
    if own_org and own_addr:
        peers[own_org] = own_addr
    return peers


@dataclasses.dataclass(frozen=True)
class CommonSettings:
    """Settings every gRPC service shares."""

    service_name: str = env("TESSERA_SERVICE_NAME", "tessera", "Name used in logs and traces.")
    grpc_addr: str = env("TESSERA_GRPC_ADDR", "127.0.0.1:50051", "host:port the gRPC server listens on.")
    database_url: str = env("TESSERA_DATABASE_URL", "", "SQLAlchemy URL of the service's PostgreSQL database.")
    nats_url: str = env("TESSERA_NATS_URL", "", "NATS server URL (JetStream enabled); empty disables NATS.")
    log_level: str = env("TESSERA_LOG_LEVEL", "INFO", "Log level of the JSON logs.")
    auth_mode: str = env("TESSERA_AUTH_MODE", "secret", "How callers prove their organization: secret or mtls.")
    org_secret_file: str = env(
        "TESSERA_ORG_SECRET_FILE", "", "secret mode: file holding this organization's own secret (none for the ledger)."
    )
    org_verifiers_file: str = env(
        "TESSERA_ORG_VERIFIERS_FILE",
        "",
        "secret mode: JSON file mapping each organization id to the verifier of its secret (sha256:<hex>).",
    )
    channels: str = env(
        "TESSERA_CHANNELS", "", "Channel membership, e.g. 'mychannel=org1,org2;other=org2' (empty: one open channel)."
    )
    tls_cert: str = env("TESSERA_TLS_CERT", "", "mtls mode: server certificate (PEM file).")
    tls_key: str = env("TESSERA_TLS_KEY", "", "mtls mode: server private key (PEM file).")
    tls_ca: str = env("TESSERA_TLS_CA", "", "mtls mode: CA bundle that signs the organizations' certificates.")
    org_id: str = env("TESSERA_ORG_ID", "", "The organization this process belongs to (empty for the ledger).")
    health_addr: str = env(
        "TESSERA_HEALTH_ADDR",
        "",
        "host:port of a plaintext server with grpc.health.v1 only, for probes that hold no client certificate "
        "(the kubelet's); empty: none.",
    )
    shutdown_grace: float = env("TESSERA_SHUTDOWN_GRACE", 5.0, "Seconds in-flight calls get to finish on stop.")

    def own_channels(self) -> list[str]:
        """The channels this organization is a member of (``[""]``: the one open channel when none are
        configured). The one reading of ``TESSERA_CHANNELS`` for a service acting as its organization."""
        return Channels.parse(self.channels).of(self.org_id) or [""]
