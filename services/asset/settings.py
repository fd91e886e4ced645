"""Settings of the asset service."""

from __future__ import annotations

from dataclasses import dataclass

from services.kit.settings import CommonSettings, env


@dataclass(frozen=True)
class AssetSettings(CommonSettings):
    """Everything the ledger reads from its environment (plus :class:`CommonSettings`)."""

    service_name: str = env("TESSERA_SERVICE_NAME", "asset", "Name used in logs and traces.")
    relay_enabled: bool = env("TESSERA_RELAY_ENABLED", True, "Publish committed events to NATS JetStream.")
    tx_retries: int = env("TESSERA_TX_RETRIES", 12, "Retries of a write after a serialization failure.")
