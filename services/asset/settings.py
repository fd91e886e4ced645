"""Settings of the asset service."""

from __future__ import annotations

from dataclasses import dataclass

from services.kit.settings import CommonSettings, env


@dataclass(frozen=True)
class AssetSettings(CommonSettings):
    """Everything the ledger reads from its environment (plus :class:`CommonSettings`)."""

    service_name: str = env("TESSERA_SERVICE_NAME", "asset", "Name used in logs and traces.")
