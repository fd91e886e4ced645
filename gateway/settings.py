"""Settings of the gateway."""

from __future__ import annotations

from dataclasses import dataclass

from services.kit.settings import CommonSettings, env


@dataclass(frozen=True)
class GatewaySettings(CommonSettings):
    """Everything the gateway reads from its environment (plus :class:`CommonSettings`)."""

    service_name: str = env("TESSERA_SERVICE_NAME", "gateway", "Name used in logs and traces.")
    http_addr: str = env("TESSERA_HTTP_ADDR", "127.0.0.1:8000", "host:port the HTTP server listens on.")
    asset_addr: str = env("ASSET_ADDR", "", "gRPC address of the ledger.")
    storage_addr: str = env("STORAGE_ADDR", "", "gRPC address of this organization's storage service.")
    compute_addr: str = env("COMPUTE_ADDR", "", "gRPC address of this organization's compute service.")
    event_addr: str = env("EVENT_ADDR", "", "gRPC address of this organization's event service.")
    users_file: str = env("TESSERA_USERS_FILE", "", "JSON file of the users to provision at start.")
    health_timeout: float = env("TESSERA_HEALTH_TIMEOUT", 2.0, "Seconds an upstream health check may take.")

    def upstreams(self) -> dict[str, str]:
        """The configured upstream services by name."""
        pairs = {
            "asset": self.asset_addr,
            "storage": self.storage_addr,
            "compute": self.compute_addr,
            "event": self.event_addr,
        }
        return {name: addr for name, addr in pairs.items() if addr}
