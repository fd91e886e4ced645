"""Settings of the gateway."""

from __future__ import annotations

from dataclasses import dataclass

from services.kit.settings import CommonSettings, env, parse_peers


@dataclass(frozen=True)
class GatewaySettings(CommonSettings):
    """Everything the gateway reads from its environment (plus :class:`CommonSettings`)."""

    service_name: str = env("TESSERA_SERVICE_NAME", "gateway", "Name used in logs and traces.")
    http_addr: str = env("TESSERA_HTTP_ADDR", "127.0.0.1:8000", "host:port the HTTP server listens on.")
    asset_addr: str = env("ASSET_ADDR", "", "gRPC address of the ledger.")
    storage_addr: str = env("STORAGE_ADDR", "", "gRPC address of this organization's storage service.")
    compute_addr: str = env("COMPUTE_ADDR", "", "gRPC address of this organization's compute service.")
    event_addr: str = env("EVENT_ADDR", "", "gRPC address of this organization's event service.")
    peers: str = env(
        "TESSERA_PEERS",
        "",
        "Storage addresses of the organizations, 'org2=host:port,org3=host:port': downloads of a peer's files.",
    )
    users_file: str = env(
        "TESSERA_USERS_FILE",
        "",
        'Users to provision at start: JSON {"users": [{"username", "password", "role", "channel"}]} (or the '
        "account operator's lines 'name password channel'). Users absent from the file are removed.",
    )
    health_timeout: float = env("TESSERA_HEALTH_TIMEOUT", 2.0, "Seconds an upstream health check may take.")
    public_url: str = env(
        "TESSERA_PUBLIC_URL",
        "",
        "Base URL clients reach this gateway at, used in the addresses of the files it uploads when storage "
        "gives none (empty: http://TESSERA_HTTP_ADDR).",
    )
    upstream_timeout: float = env("TESSERA_UPSTREAM_TIMEOUT", 120.0, "Seconds one gRPC call to a service may take.")
    token_lifetime_minutes: int = env(
        "TESSERA_TOKEN_LIFETIME_MINUTES", 1440, "Lifetime of the tokens POST /api-token-auth/ issues (minutes)."
    )
    login_rate: int = env("TESSERA_LOGIN_RATE", 40, "Login attempts allowed per client address and minute (429).")
    login_user_rate: int = env(
        "TESSERA_LOGIN_USER_RATE", 10, "Failed login attempts allowed per user name and minute (429 beyond)."
    )
    trusted_proxies: tuple[str, ...] = env(
        "TESSERA_TRUSTED_PROXIES",
        (),
        "Addresses or networks of the reverse proxies whose X-Forwarded-For/-Proto are believed, comma-separated "
        "(empty: none; the peer's address is the client's).",
    )
    cors_origins: tuple[str, ...] = env(
        "TESSERA_CORS_ORIGINS",
        (),
        "Exact origins of the web frontend allowed to call this gateway with credentials, comma-separated "
        "(e.g. http://127.0.0.1:3000; no wildcard).",
    )
    cookie_domain: str = env(
        "TESSERA_COOKIE_DOMAIN",
        "",
        "Domain attribute of the session cookies when the frontend is on a sibling host (Substra's "
        "COMMON_HOST_DOMAIN); empty: the gateway's host only.",
    )
    jwt_secret_file: str = env(
        "TESSERA_JWT_SECRET_FILE",
        "",
        "File holding the key (at least 32 bytes) that signs the web frontend's access tokens; every replica "
        "of the gateway needs the same. Empty: a random key per process (sessions survive a restart only "
        "through a refresh).",
    )
    access_token_minutes: int = env(
        "TESSERA_ACCESS_TOKEN_MINUTES", 1440, "Lifetime of the web frontend's access tokens (minutes)."
    )
    refresh_token_minutes: int = env(
        "TESSERA_REFRESH_TOKEN_MINUTES", 10080, "Lifetime of each refresh token of the web frontend (minutes)."
    )
    refresh_reuse_grace_seconds: float = env(
        "TESSERA_REFRESH_REUSE_GRACE_SECONDS",
        10.0,
        "Seconds after its rotation during which a refresh token presented again gets a sibling (parallel "
        "refreshes of one page) instead of revoking its session as a replay.",
    )
    token_cache_seconds: float = env(
        "TESSERA_TOKEN_CACHE_SECONDS", 10.0, "How long a verified token is trusted without a database lookup."
    )
    max_upload_bytes: int = env("TESSERA_MAX_UPLOAD_BYTES", 1 << 30, "Largest accepted uploaded file (413).")
    max_json_bytes: int = env("TESSERA_MAX_JSON_BYTES", 16 << 20, "Largest accepted JSON body or form field (413).")
    model_export_channels: tuple[str, ...] = env(
        "TESSERA_MODEL_EXPORT_CHANNELS",
        (),
        "Channels whose users may download models (Substra's model_export_enabled), comma-separated.",
    )
    servermedias_root: str = env(
        "TESSERA_SERVERMEDIAS_ROOT",
        "",
        "Folder on this server under which data samples may be registered by path (local=False); empty: refused.",
    )
    version: str = env("TESSERA_VERSION", "0.1.0", "Version reported by /info/.")

    def upstreams(self) -> dict[str, str]:
        """The configured upstream services by name."""
        pairs = {
            "asset": self.asset_addr,
            "storage": self.storage_addr,
            "compute": self.compute_addr,
            "event": self.event_addr,
        }
        return {name: addr for name, addr in pairs.items() if addr}

    def peer_addresses(self) -> dict[str, str]:
        """Storage address by organization, this one's included."""
        return parse_peers(self.peers, self.org_id, self.storage_addr)

    def base_url(self) -> str:
        """The gateway's public base URL, without a trailing slash."""
        return (self.public_url or f"http://{self.http_addr}").rstrip("/")
