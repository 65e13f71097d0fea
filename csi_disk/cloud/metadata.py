"""Client for the ECS instance metadata service.

Uses the token flow (IMDSv2-like, hardened mode) when the service offers it and falls back
to plain GETs when the token call is refused, as instances in "normal" mode answer. The
refusal is remembered for a few minutes only, and a plain GET answered 401 ends it at once:
an instance switched to hardened mode later must not lock the driver out for good. The base
URL may carry a path so an emulator can serve several instances from one port.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

from csi_disk.errors import Unavailable

DEFAULT_ENDPOINT = "http://100.100.100.200"
TOKEN_TTL_SECONDS = 21600
_TOKEN_MARGIN = 60.0
_FALLBACK_STATUSES = (403, 404, 405)
PLAIN_RETRY_SECONDS = 300.0  # after a refused token call, ask for a token again this late


class MetadataClient:
    """Reads this instance's identity and RAM role credentials."""

    def __init__(
        self,
        endpoint: str = DEFAULT_ENDPOINT,
        timeout: float = 2.0,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.base = (endpoint or DEFAULT_ENDPOINT).rstrip("/")
        self.timeout = timeout
        self._clock = clock
        self._lock = threading.Lock()
        self._token = ""
        self._token_expiry = 0.0
        self._plain_until = float("-inf")  # the token call was refused: plain GETs until then

    # --- public reads -------------------------------------------------------------------

    def instance_id(self) -> str:
        return self.get("latest/meta-data/instance-id")

    def zone_id(self) -> str:
        return self.get("latest/meta-data/zone-id")

    def region_id(self) -> str:
        return self.get("latest/meta-data/region-id")

    def instance_type(self) -> str:
        return self.get("latest/meta-data/instance/instance-type")

    def ram_role(self) -> str:
        """The name of the RAM role attached to the instance."""
        listing = self.get("latest/meta-data/ram/security-credentials/")
        names = [line.strip() for line in listing.splitlines() if line.strip()]
        if not names:
            raise Unavailable("no RAM role is attached to this instance")
        return names[0]

    def role_credentials(self, role: str) -> dict[str, Any]:
        """AccessKeyId, AccessKeySecret, SecurityToken and Expiration for ``role``."""
        if not role or "/" in role or role in (".", ".."):
            raise Unavailable("invalid RAM role name")
        text = self.get(f"latest/meta-data/ram/security-credentials/{role}")
        try:
            data = json.loads(text)
        except ValueError:
            raise Unavailable("metadata service returned unreadable role credentials") from None
        if not isinstance(data, dict):
            raise Unavailable("metadata service returned unreadable role credentials")
        if data.get("Code", "Success") != "Success":
            raise Unavailable(f"metadata service refused role credentials: {data.get('Code')}")
        required = ("AccessKeyId", "AccessKeySecret", "SecurityToken")
        missing = [k for k in required if not data.get(k)]
        if missing:
            raise Unavailable(f"role credentials lack {', '.join(missing)}")
        return data

    # --- transport ----------------------------------------------------------------------

    def get(self, path: str) -> str:
        """GET ``path`` below the base URL, with a session token when the service wants one."""
        token = self._session_token()
        headers = {"X-aliyun-ecs-metadata-token": token} if token else {}
        status, body = self._request("GET", path, headers)
        if status == 401:
            # The token expired early, the service restarted, or it now wants tokens where
            # it refused them before: fetch a new one once.
            with self._lock:
                self._token = ""
                self._plain_until = float("-inf")
            token = self._session_token()
            headers = {"X-aliyun-ecs-metadata-token": token} if token else {}
            status, body = self._request("GET", path, headers)
        if status != 200:
            raise Unavailable(f"metadata service answered HTTP {status} for {_safe_path(path)}")
        return body.decode("utf-8", "replace").strip()

    def _session_token(self) -> str:
        with self._lock:
            if self._clock() < self._plain_until:
                return ""
            if self._token and self._clock() < self._token_expiry:
                return self._token
        status, body = self._request(
            "PUT",
            "latest/api/token",
            {"X-aliyun-ecs-metadata-token-ttl-seconds": str(TOKEN_TTL_SECONDS)},
        )
        with self._lock:
            if status in _FALLBACK_STATUSES:
                self._plain_until = self._clock() + PLAIN_RETRY_SECONDS
                return ""
            if status != 200:
                raise Unavailable(f"metadata service answered HTTP {status} for a session token")
            self._token = body.decode("ascii", "replace").strip()
            self._token_expiry = self._clock() + TOKEN_TTL_SECONDS - _TOKEN_MARGIN
            return self._token

    def _request(self, method: str, path: str, headers: dict[str, str]) -> tuple[int, bytes]:
        url = f"{self.base}/{path.lstrip('/')}"
        if not url.startswith(("http://", "https://")):
            raise Unavailable("metadata endpoint must be an http(s) URL")
        request = urllib.request.Request(url, method=method, headers=headers)  # noqa: S310
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310
                return response.status, response.read()
        except urllib.error.HTTPError as err:
            err.close()
            return err.code, b""
        except (urllib.error.URLError, OSError, ValueError) as err:
            reason = getattr(err, "reason", err)
            kind = type(reason).__name__
            raise Unavailable(
                f"metadata service unreachable for {_safe_path(path)} ({kind})"
            ) from None


def _safe_path(path: str) -> str:
    """The metadata path without a role name, for messages."""
    prefix = "latest/meta-data/ram/security-credentials/"
    return prefix if path.startswith(prefix) else path
