"""Settings: the one frozen object through which configuration enters the server."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import SplitResult, urlsplit

from .errors import ConfigError

__all__ = ["Settings", "DEMO_PASSWORD"]

# Every demo user's password unless `demo --demo-password` says otherwise.
DEMO_PASSWORD = "eboard-demo"

_DEFAULT_CLIENT_DIR = Path(__file__).resolve().parent.parent / "client" / "dist"


def _netloc(url: SplitResult) -> str | None:
    """host:port with the scheme's default port made explicit (None: not a valid port)."""
    try:
        port = url.port or (443 if url.scheme == "https" else 80)
    except ValueError:
        return None
    return f"{url.hostname}:{port}"


@dataclass(frozen=True)
class Settings:
    """Everything the server can be told; validated once, at start."""

    data_dir: Path
    host: str = "127.0.0.1"
    port: int = 8080
    database_url: str = ""
    public_url: str = ""
    client_dir: Path = _DEFAULT_CLIENT_DIR
    token_ttl_seconds: int = 12 * 3600
    invitation_ttl_seconds: int = 7 * 24 * 3600
    max_upload_bytes: int = 10 * 1024 * 1024
    max_imaging_upload_bytes: int = 2 * 1024 * 1024 * 1024
    # Uploads (imaging, STOW-RS, attachments) one user may have in flight at once, per process.
    uploads_per_user: int = 2
    # The hospital PACS's DICOMweb root (e.g. http://pacs.local:8042/dicom-web), for import.
    pacs_url: str = ""
    session_horizon_weeks: int = 26
    # The SFU in its own worker process (production) or in the server's process (tests).
    media_worker: bool = False
    last_n: int = 6  # video from the N most recent speakers plus the presenter
    stun_urls: tuple[str, ...] = ()
    turn_urls: tuple[str, ...] = ()
    turn_secret: str = ""
    reconnect_grace_seconds: float = 10.0
    event_rate_per_second: float = 20.0
    event_burst: int = 40
    # The presenter's view patches and pointer moves (each coalesced to <= 60 Hz by the client)
    # have their own allowance, so a scrolling presenter never starves their other events.
    view_rate_per_second: float = 150.0
    view_burst: int = 300
    # Note updates (clients coalesce keystrokes, ~20 per second while typing) and focus moves.
    note_rate_per_second: float = 100.0
    note_burst: int = 300
    # Worker processes making PDF/FHIR/HL7 exports; 0: one fewer than the cores (at least 1).
    export_workers: int = 0
    # The longest date range a records search or bulk export may span.
    max_export_range_days: int = 366
    tls_cert: Path | None = None
    tls_key: Path | None = None
    # Plain HTTP on a non-loopback address: only behind a TLS-terminating proxy.
    insecure_http: bool = False

    def __post_init__(self) -> None:
        if not 0 < self.port < 65536:
            raise ConfigError(f"port must be between 1 and 65535, not {self.port}")
        if self.database_url and not self.database_url.startswith(
            ("sqlite+aiosqlite://", "postgresql+asyncpg://")
        ):
            raise ConfigError(
                "database-url must start with sqlite+aiosqlite:// or postgresql+asyncpg://, "
                f"not {self.database_url.split(':', 1)[0]}://"
            )
        if self.public_url:
            parts = urlsplit(self.public_url)
            if parts.scheme not in ("http", "https") or not parts.netloc:
                raise ConfigError(
                    f"public-url must be an absolute http(s) URL, not {self.public_url!r}"
                )
        for name in (
            "token_ttl_seconds",
            "invitation_ttl_seconds",
            "max_upload_bytes",
            "max_imaging_upload_bytes",
            "uploads_per_user",
        ):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name.replace('_', '-')} must be positive")
        if self.pacs_url and not self.pacs_url.startswith(("http://", "https://")):
            # Not echoed: the URL may carry credentials.
            raise ConfigError("pacs-url must be an http(s) DICOMweb root")
        if self.turn_urls and not self.turn_secret:
            raise ConfigError("turn-url needs turn-secret (coturn's static-auth-secret)")
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ConfigError("tls-cert and tls-key must be given together")
        for path in (self.tls_cert, self.tls_key):
            if path is not None and not path.is_file():
                raise ConfigError(f"TLS file {path} does not exist")
        if self.data_dir.exists() and not self.data_dir.is_dir():
            raise ConfigError(f"data-dir {self.data_dir} exists and is not a directory")

    @property
    def effective_database_url(self) -> str:
        """The database URL, defaulting to SQLite in the data directory."""
        return self.database_url or f"sqlite+aiosqlite:///{self.data_dir / 'eboard.sqlite3'}"

    @property
    def tls_enabled(self) -> bool:
        """TLS is on by default outside loopback, and whenever a certificate is configured."""
        return self.tls_cert is not None or (not self.is_local and not self.insecure_http)

    @property
    def cookie_secure(self) -> bool:
        return self.tls_enabled or self.public_url.startswith("https://")

    @property
    def effective_public_url(self) -> str:
        """Where browsers reach the server, used in invitation links and calendar entries."""
        if self.public_url:
            return self.public_url.rstrip("/")
        scheme = "https" if self.tls_enabled else "http"
        return f"{scheme}://{self.host}:{self.port}"

    def accepts_origin(self, origin: str, host: str) -> bool:
        """Whether a browser's ``Origin`` is eBoard's own pages: the public URL's origin when
        one is set, else any scheme on the ``Host`` the request was sent to (behind a proxy
        that rewrites Host, set the public URL)."""
        parts = urlsplit(origin.strip().lower())
        if self.public_url:
            public = urlsplit(self.public_url.lower())
            theirs = _netloc(parts)
            return theirs is not None and (parts.scheme, theirs) == (public.scheme, _netloc(public))
        return parts.scheme in ("http", "https") and parts.netloc == host.lower()

    @property
    def is_local(self) -> bool:
        """True when the server only listens on the loopback interface."""
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False
