"""Where the driver's ECS credentials come from, and keeping them fresh.

The chain is resolved once at start, first match wins: an explicit access key (flags, then
``ALIBABA_CLOUD_ACCESS_KEY_ID``/``_SECRET``, then the upstream driver's ``ACCESS_KEY_ID``/
``ACCESS_KEY_SECRET``), an STS token file (re-read when it changes, as a secret projected by
Kubernetes is rewritten in place), then the instance's RAM role through our own metadata
client (refreshed before it expires, and at once after ECS reports an expired token).

``invalidate`` names the credentials ECS refused: when a hundred calls signed with one token
all come back expired, only the first report marks that token stale and one refresh serves
them all; reports about a token already replaced change nothing.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from csi_disk.cloud.errors import register_secret
from csi_disk.cloud.metadata import MetadataClient
from csi_disk.errors import Unavailable

if TYPE_CHECKING:
    from csi_disk.config import Config

log = logging.getLogger(__name__)

ENV_KEY_PAIRS = (
    ("ALIBABA_CLOUD_ACCESS_KEY_ID", "ALIBABA_CLOUD_ACCESS_KEY_SECRET"),
    ("ACCESS_KEY_ID", "ACCESS_KEY_SECRET"),
)
ENV_STS_TOKEN_FILE = "ALIBABA_CLOUD_STS_TOKEN_FILE"  # noqa: S105 (a variable name)
REFRESH_MARGIN = 300.0  # renew role credentials this many seconds before they expire


@dataclass(frozen=True)
class Credentials:
    """One set of credentials; ``repr`` never shows the secret or the token."""

    access_key_id: str
    access_key_secret: str
    security_token: str = ""
    expiration: float | None = None  # seconds since the epoch
    source: str = ""

    def __repr__(self) -> str:
        key = self.access_key_id[:4] + "***" if self.access_key_id else ""
        return (
            f"Credentials(access_key_id={key!r}, source={self.source!r}, "
            f"sts={bool(self.security_token)}, expiration={self.expiration!r})"
        )

    __str__ = __repr__


class CredentialProvider(Protocol):
    def get(self) -> Credentials:
        """Current credentials, refreshed when needed."""
        ...

    def invalidate(self, failed: Credentials | None = None) -> None:
        """ECS said ``failed`` expired: forget them, unless they were replaced already.

        ``None`` means whatever is current.
        """
        ...


def _remember(creds: Credentials) -> Credentials:
    register_secret(creds.access_key_secret)
    register_secret(creds.security_token)
    return creds


def parse_expiration(value: Any) -> float | None:
    """ECS-style ``2024-01-01T00:00:00Z`` to epoch seconds; None when absent or unreadable."""
    if not value or not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _from_document(data: Any, source: str) -> Credentials:
    if not isinstance(data, dict):
        raise Unavailable(f"{source}: credentials are not a JSON object")
    key_id = data.get("AccessKeyId")
    secret = data.get("AccessKeySecret")
    if not key_id or not secret:
        raise Unavailable(f"{source}: credentials lack AccessKeyId or AccessKeySecret")
    return _remember(
        Credentials(
            access_key_id=str(key_id),
            access_key_secret=str(secret),
            security_token=str(data.get("SecurityToken") or ""),
            expiration=parse_expiration(data.get("Expiration")),
            source=source,
        )
    )


class StaticProvider:
    """A fixed access key pair."""

    def __init__(self, creds: Credentials) -> None:
        self._creds = _remember(creds)

    def get(self) -> Credentials:
        return self._creds

    def invalidate(self, failed: Credentials | None = None) -> None:
        """Nothing to refresh: a static key does not expire."""


class StsFileProvider:
    """STS credentials from a JSON file, re-read whenever its mtime or size changes."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._stamp: tuple[int, int] | None = None
        self._creds: Credentials | None = None

    def get(self) -> Credentials:
        with self._lock:
            try:
                st = self.path.stat()
            except OSError as err:
                raise Unavailable(f"STS token file unreadable: {err.strerror}") from None
            stamp = (st.st_mtime_ns, st.st_size)
            if self._creds is None or stamp != self._stamp:
                try:
                    data = json.loads(self.path.read_text(encoding="utf-8"))
                except OSError as err:
                    raise Unavailable(f"STS token file unreadable: {err.strerror}") from None
                except ValueError:
                    raise Unavailable("STS token file is not valid JSON") from None
                self._creds = _from_document(data, "sts-file")
                self._stamp = stamp
            return self._creds

    def invalidate(self, failed: Credentials | None = None) -> None:
        with self._lock:
            if failed is None or failed == self._creds:
                self._stamp = None


class _Flight:
    """One metadata fetch that every caller arriving while it runs shares."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.result: Credentials | None = None
        self.error: Unavailable | None = None


class RamRoleProvider:
    """Temporary credentials of the instance's RAM role, via the metadata service.

    Refreshes are single-flight: one caller fetches, callers arriving meanwhile either keep
    using the current credentials (still valid, only due for renewal) or wait for that fetch
    and share its outcome, so an expiry seen by many calls at once costs one fetch.
    """

    def __init__(
        self,
        metadata: MetadataClient,
        role: str = "",
        *,
        margin: float = REFRESH_MARGIN,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._metadata = metadata
        self._role = role
        self._margin = margin
        self._clock = clock
        self._lock = threading.Lock()
        self._creds: Credentials | None = None
        self._stale = False
        self._flight: _Flight | None = None

    def get(self) -> Credentials:
        with self._lock:
            creds = self._creds
            if creds is not None and not self._stale and not self._due(creds):
                return creds
            usable = creds is not None and not self._stale and not self._expired(creds)
            flight = self._flight
            if flight is not None and usable and creds is not None:
                return creds  # someone is renewing them; these still work meanwhile
            leader = flight is None
            if leader:
                flight = self._flight = _Flight()
        assert flight is not None
        if not leader:
            flight.done.wait()
            if flight.result is not None:
                return flight.result
            raise Unavailable(flight.error.message if flight.error else "refresh failed")
        try:
            fresh = self._fetch()
        except Unavailable as err:
            flight.error = err
            self._land(flight)
            # Keep serving the old credentials while they are still valid: a metadata
            # blip must not fail calls that would succeed.
            if usable and creds is not None:
                log.warning("refreshing RAM role credentials failed; using current ones")
                return creds
            raise
        except BaseException as err:
            kind = type(err).__name__
            flight.error = Unavailable(f"refreshing RAM role credentials failed: {kind}")
            self._land(flight)
            raise
        with self._lock:
            self._creds = fresh
            self._stale = False
        flight.result = fresh
        self._land(flight)
        return fresh

    def invalidate(self, failed: Credentials | None = None) -> None:
        with self._lock:
            if failed is None or failed == self._creds:
                self._stale = True

    def _land(self, flight: _Flight) -> None:
        with self._lock:
            if self._flight is flight:
                self._flight = None
        flight.done.set()

    def _fetch(self) -> Credentials:
        if not self._role:
            self._role = self._metadata.ram_role()
        return _from_document(self._metadata.role_credentials(self._role), "ram-role")

    def _due(self, creds: Credentials) -> bool:
        if creds.expiration is None:
            return False
        return self._clock() >= creds.expiration - self._margin

    def _expired(self, creds: Credentials) -> bool:
        return creds.expiration is not None and self._clock() >= creds.expiration


def resolve_provider(
    config: Config,
    *,
    env: Mapping[str, str] | None = None,
    metadata: MetadataClient | None = None,
) -> CredentialProvider:
    """Pick the first credential source that is configured (nothing is fetched yet)."""
    env = os.environ if env is None else env
    if config.access_key_id and config.access_key_secret:
        return StaticProvider(
            Credentials(config.access_key_id, config.access_key_secret, source="config")
        )
    for id_var, secret_var in ENV_KEY_PAIRS:
        key_id, secret = env.get(id_var, ""), env.get(secret_var, "")
        if key_id and secret:
            return StaticProvider(Credentials(key_id, secret, source=f"env:{id_var}"))
    sts_file = config.sts_token_file or env.get(ENV_STS_TOKEN_FILE, "")
    if sts_file:
        return StsFileProvider(sts_file)
    return RamRoleProvider(metadata or MetadataClient(config.metadata_endpoint), config.ram_role)
