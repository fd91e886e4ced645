"""Settings of the event service."""

from __future__ import annotations

from dataclasses import dataclass

from services.kit.settings import CommonSettings, env


@dataclass(frozen=True)
class EventSettings(CommonSettings):
    """Everything the event service reads from its environment (plus :class:`CommonSettings`)."""

    service_name: str = env("TESSERA_SERVICE_NAME", "event", "Name used in logs and traces.")
    asset_addr: str = env("ASSET_ADDR", "", "gRPC address of the ledger.")
    compute_addr: str = env("COMPUTE_ADDR", "", "gRPC address of this organization's compute service.")
    storage_addr: str = env("STORAGE_ADDR", "", "gRPC address of this organization's storage service.")
    follow_enabled: bool = env("TESSERA_FOLLOW_ENABLED", True, "Follow the ledger and turn events into work.")
    retry_seconds: float = env("TESSERA_RETRY_SECONDS", 1.0, "Pause before reconnecting to the ledger.")
    hold_seconds: float = env(
        "TESSERA_EVENT_HOLD_SECONDS",
        0.2,
        "How long the ledger may hold back events that ask nothing of this organization (other organizations' "
        "work), to send them with later ones; the feed lags by up to this much more. 0: every event at once.",
    )
    public_url: str = env("TESSERA_PUBLIC_URL", "", "This organization's gateway URL, registered in the ledger.")
