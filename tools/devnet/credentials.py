"""The files of a secret-mode network (ADR 0014): each organization's own secret, and everyone's verifiers.

An organization's processes get its own ``<org>.secret`` and the shared ``verifiers.json``; the ledger gets the
verifiers only. No file given to one organization holds another's secret.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from services.kit.identity import secret_verifier


def new_secret() -> str:
    """A fresh organization secret: 256 random bits, as hex."""
    return secrets.token_hex(32)


@dataclass(frozen=True)
class CredentialFiles:
    """Where the verifiers and each organization's secret were written."""

    verifiers: Path
    secret_files: Mapping[str, Path]

    def secret(self, org: str) -> str:
        """The secret of ``org`` (for a test or a tool acting as that organization)."""
        return self.secret_files[org].read_text().strip()

    def settings(self, org: str = "") -> dict[str, str]:
        """``CommonSettings`` keyword arguments of a process of ``org`` (``""``: the ledger, verifiers only)."""
        own = self.secret_files[org] if org else ""
        return {"org_verifiers_file": str(self.verifiers), "org_secret_file": str(own)}

    def env(self, org: str = "") -> dict[str, str]:
        """The same as environment variables."""
        values = self.settings(org)
        return {
            "TESSERA_ORG_VERIFIERS_FILE": values["org_verifiers_file"],
            "TESSERA_ORG_SECRET_FILE": values["org_secret_file"],
        }


def write_org_credentials(folder: Path, org_secrets: Mapping[str, str]) -> CredentialFiles:
    """Write ``<org>.secret`` (mode 0600) for each organization and ``verifiers.json`` into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    secret_files = {}
    for org, secret in org_secrets.items():
        path = folder / f"{org}.secret"
        # Created 0600 before the secret is written, so it is never readable by others, even briefly.
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as out:
            out.write(secret)
        secret_files[org] = path
    verifiers = folder / "verifiers.json"
    verifiers.write_text(json.dumps({org: secret_verifier(s) for org, s in org_secrets.items()}, indent=2))
    return CredentialFiles(verifiers, secret_files)


def keep_or_create(folder: Path, orgs: Iterable[str]) -> CredentialFiles:
    """The organizations' credentials in ``folder``: secrets already there are kept, missing ones created."""
    org_secrets = {}
    for org in orgs:
        path = folder / f"{org}.secret"
        org_secrets[org] = path.read_text().strip() if path.exists() else new_secret()
    return write_org_credentials(folder, org_secrets)
