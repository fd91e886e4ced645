"""Who is calling: the organization (and channel) behind a gRPC call, from its credential only.

Two modes behind one interface:

* ``secret`` (the dev network): the caller sends ``authorization: Basic base64(org:secret)``;
  the server hashes the secret and compares it, in constant time, with the verifier it holds for
  that organization (ADR 0014). A process holds its own organization's secret only, never another's.
* ``mtls`` (production): the TLS layer has already verified the client certificate against the
  network's CA; the organization is the certificate's common name.

The channel comes from the ``x-tessera-channel`` header and must be one the organization is a
member of (an absent header means the organization's first channel). A gateway that acts for
one of its users adds ``x-tessera-user`` for audit; it grants nothing.
"""

from __future__ import annotations

import base64
import contextvars
import hashlib
import hmac
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from services.kit.errors import PermissionDenied, Unauthenticated

CHANNEL_HEADER = "x-tessera-channel"
USER_HEADER = "x-tessera-user"
DEFAULT_CHANNEL = "mychannel"
# An organization's secret is a random token (``openssl rand -hex 32``); shorter ones are refused at start.
MIN_SECRET_CHARS = 32
_VERIFIER = re.compile(r"sha256:[0-9a-f]{64}")


@dataclass(frozen=True)
class Caller:
    """The authenticated organization of a call, the channel it acts in, and the user (audit only)."""

    org_id: str
    channel: str
    user: str = ""


_current: contextvars.ContextVar[Caller | None] = contextvars.ContextVar("tessera_caller", default=None)


def current_caller() -> Caller:
    """The caller of the RPC being served; raises if called outside an authenticated call."""
    caller = _current.get()
    if caller is None:
        raise Unauthenticated("no authenticated caller in this context")
    return caller


def set_current_caller(caller: Caller | None) -> contextvars.Token:
    """Bind ``caller`` to the running task (used by the server interceptor and by tests)."""
    return _current.set(caller)


class Channels:
    """Channel membership from configuration: ``'mychannel=org1,org2;other=org2'``."""

    def __init__(self, members: Mapping[str, Sequence[str]]) -> None:
        self._members = {name: tuple(orgs) for name, orgs in members.items()}

    @classmethod
    def parse(cls, spec: str, known_orgs: Sequence[str] = ()) -> Channels:
        """Parse the configuration string; an empty one is a single channel holding ``known_orgs``."""
        if not spec.strip():
            return cls({DEFAULT_CHANNEL: tuple(known_orgs)})
        members: dict[str, tuple[str, ...]] = {}
        for part in spec.split(";"):
            if not part.strip():
                continue
            name, _, orgs = part.partition("=")
            members[name.strip()] = tuple(o.strip() for o in orgs.split(",") if o.strip())
        return cls(members)

    def of(self, org_id: str) -> list[str]:
        """The channels ``org_id`` belongs to, in configuration order."""
        return [name for name, orgs in self._members.items() if org_id in orgs]

    def members(self, channel: str) -> tuple[str, ...]:
        """The organizations of ``channel``."""
        return self._members.get(channel, ())

    def resolve(self, org_id: str, requested: str | None) -> str:
        """The channel a call acts in, checking membership."""
        channels = self.of(org_id)
        if not channels:
            raise PermissionDenied(f"organization {org_id!r} belongs to no channel", reason="NO_CHANNEL")
        if not requested:
            return channels[0]
        if requested not in channels:
            raise PermissionDenied(
                f"organization {org_id!r} is not a member of channel {requested!r}", reason="NOT_CHANNEL_MEMBER"
            )
        return requested


class Authenticator(Protocol):
    """Turns a call's metadata and TLS auth context into a :class:`Caller`."""

    def authenticate(self, metadata: Mapping[str, str], auth_context: Mapping[str, Sequence[bytes]]) -> Caller:
        """Return the caller or raise :class:`Unauthenticated` / :class:`PermissionDenied`."""


def secret_verifier(secret: str) -> str:
    """What a server keeps in place of an organization's secret: ``sha256:<hex>`` of the secret.

    A fast hash suffices because the secret is a high-entropy random token, not a password (ADR 0014);
    ``printf %s "$secret" | sha256sum`` gives the same digest.
    """
    return "sha256:" + hashlib.sha256(secret.encode()).hexdigest()


# Compared against when the organization is unknown, so that the answer takes the same time.
_NO_VERIFIER = secret_verifier("")


class SecretAuthenticator:
    """Dev-network mode: each organization proves itself with its secret; the server holds verifiers only."""

    def __init__(self, verifiers: Mapping[str, str], channels: Channels) -> None:
        self._verifiers = dict(verifiers)
        self._channels = channels

    def authenticate(self, metadata: Mapping[str, str], auth_context: Mapping[str, Sequence[bytes]]) -> Caller:
        header = metadata.get("authorization", "")
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "basic" or not value:
            raise Unauthenticated("missing organization credentials (authorization: Basic ...)")
        try:
            org_id, _, secret = base64.b64decode(value, validate=True).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            raise Unauthenticated("malformed authorization header") from None
        expected = self._verifiers.get(org_id)
        # One hash and one constant-time comparison on every path: the timing does not tell which part was wrong.
        matches = hmac.compare_digest(expected or _NO_VERIFIER, secret_verifier(secret))
        if expected is None or not secret or not matches:
            raise Unauthenticated("invalid organization credentials")
        channel = self._channels.resolve(org_id, metadata.get(CHANNEL_HEADER))
        return Caller(org_id=org_id, channel=channel, user=metadata.get(USER_HEADER, ""))


class MtlsAuthenticator:
    """Production mode: the organization is the common name of the verified client certificate."""

    def __init__(self, channels: Channels) -> None:
        self._channels = channels

    def authenticate(self, metadata: Mapping[str, str], auth_context: Mapping[str, Sequence[bytes]]) -> Caller:
        names = auth_context.get("x509_common_name") or []
        if not names:
            raise Unauthenticated("no verified client certificate")
        org_id = names[0].decode()
        channel = self._channels.resolve(org_id, metadata.get(CHANNEL_HEADER))
        return Caller(org_id=org_id, channel=channel, user=metadata.get(USER_HEADER, ""))


def load_verifiers(path: str) -> dict[str, str]:
    """Read the ``{org_id: "sha256:<hex>"}`` JSON file every server of a secret-mode network holds."""
    data = json.loads(Path(path).read_text())
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object mapping organization ids to verifiers")
    malformed = sorted(org for org, v in data.items() if not (isinstance(v, str) and _VERIFIER.fullmatch(v)))
    if malformed:
        raise ValueError(
            f"{path}: the entries of {', '.join(malformed)} are not verifiers (sha256:<64 hex digits>); "
            "the file holds hashes of the organizations' secrets, never the secrets"
        )
    if len(set(data.values())) != len(data):
        raise ValueError(f"{path}: two organizations share one secret; each needs its own")
    return data


def load_own_secret(path: str) -> str:
    """Read the file holding this organization's own secret (surrounding whitespace ignored)."""
    secret = Path(path).read_text().strip()
    if len(secret) < MIN_SECRET_CHARS:
        raise ValueError(
            f"{path}: an organization secret must be a random token of at least {MIN_SECRET_CHARS} characters "
            "(e.g. openssl rand -hex 32)"
        )
    return secret


@dataclass(frozen=True)
class OrgCredentials:
    """What a client needs to call another service as an organization."""

    org_id: str
    secret: str = ""
    channel: str = ""
    # mtls mode: PEM bytes of the client's key, certificate chain and the CA to trust.
    tls_key: bytes | None = None
    tls_cert: bytes | None = None
    tls_ca: bytes | None = None

    def metadata(self, user: str = "") -> list[tuple[str, str]]:
        """Per-call metadata carrying the credential (secret mode) and the channel."""
        entries: list[tuple[str, str]] = []
        if self.secret:
            token = base64.b64encode(f"{self.org_id}:{self.secret}".encode()).decode()
            entries.append(("authorization", f"Basic {token}"))
        if self.channel:
            entries.append((CHANNEL_HEADER, self.channel))
        if user:
            entries.append((USER_HEADER, user))
        return entries
