"""Who is calling: the organization (and channel) behind a gRPC call, from its credential only.

Two modes behind one interface:

* ``secret`` (the dev network): the caller sends ``authorization: Basic base64(org:secret)``;
  the server compares the secret, in constant time, with the one it has configured for that
  organization.
* ``mtls`` (production): the TLS layer has already verified the client certificate against the
  network's CA; the organization is the certificate's common name.

The channel comes from the ``x-tessera-channel`` header and must be one the organization is a
member of (an absent header means the organization's first channel). A gateway that acts for
one of its users adds ``x-tessera-user`` for audit; it grants nothing.
"""

from __future__ import annotations

import base64
import contextvars
import hmac
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from services.kit.errors import PermissionDenied, Unauthenticated

CHANNEL_HEADER = "x-tessera-channel"
USER_HEADER = "x-tessera-user"
DEFAULT_CHANNEL = "mychannel"


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


class SecretAuthenticator:
    """Dev-network mode: each organization proves itself with a shared secret."""

    def __init__(self, secrets: Mapping[str, str], channels: Channels) -> None:
        self._secrets = dict(secrets)
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
        expected = self._secrets.get(org_id)
        # compare_digest on both branches keeps the timing independent of which part was wrong.
        if expected is None or not hmac.compare_digest(expected.encode(), secret.encode()):
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


def load_secrets(path: str) -> dict[str, str]:
    """Read the ``{org_id: secret}`` JSON file of the dev network."""
    data = json.loads(Path(path).read_text())
    if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
        raise ValueError(f"{path}: expected a JSON object mapping organization ids to secrets")
    return data


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
