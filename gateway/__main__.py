"""``python -m gateway``: settings → logs → tracing → the application (:mod:`gateway.bootstrap`) → uvicorn."""

from __future__ import annotations

import uvicorn

from gateway.bootstrap import build
from gateway.settings import GatewaySettings
from services.kit import logs, settings, telemetry


def main() -> None:
    """Serve the gateway until SIGTERM/SIGINT (uvicorn stops gracefully)."""
    config = settings.load(GatewaySettings)
    logs.configure(config.service_name, config.log_level)
    telemetry.configure_tracing(config.service_name)
    host, _, port = config.http_addr.rpartition(":")
    uvicorn.run(
        build(config),
        host=host or "127.0.0.1",
        port=int(port),
        log_config=None,  # our JSON logging is already configured
        access_log=False,
        # uvicorn would believe X-Forwarded-For from 127.0.0.1 by default; build() trusts TESSERA_TRUSTED_PROXIES only.
        proxy_headers=False,
        timeout_graceful_shutdown=int(config.shutdown_grace),
    )


if __name__ == "__main__":
    main()
