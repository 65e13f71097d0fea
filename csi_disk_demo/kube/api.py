"""A small client of the Kubernetes REST API: JSON in, JSON out, over TLS with a client
certificate or a bearer token. The node agents talk to the apiserver through it as their
node's identity, so the Node authorizer and NodeRestriction judge each call as a kubelet's."""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_PATCH = "application/strategic-merge-patch+json"


class ApiError(Exception):
    """A non-2xx answer: its HTTP status and the Status object's reason and message."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message


@dataclass(frozen=True)
class Credentials:
    ca: Path
    cert: Path | None = None
    key: Path | None = None
    token: str | None = None


class Api:
    def __init__(self, server: str, credentials: Credentials, timeout: float = 30) -> None:
        if not server.startswith("https://"):
            raise ValueError("the apiserver must be https://")
        self.server = server.rstrip("/")
        self.timeout = timeout
        self._context = ssl.create_default_context(cafile=str(credentials.ca))
        if credentials.cert is not None and credentials.key is not None:
            self._context.load_cert_chain(str(credentials.cert), str(credentials.key))
        self._token = credentials.token

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        query: dict[str, str] | None = None,
        content_type: str = "application/json",
        raw: bool = False,
    ) -> Any:
        url = self.server + path
        if query:
            url += "?" + urllib.parse.urlencode(query)
        headers = {"Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = content_type
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        # The scheme is https, checked in __init__.
        request = urllib.request.Request(url, data=data, method=method, headers=headers)  # noqa: S310
        try:
            with urllib.request.urlopen(request, timeout=self.timeout, context=self._context) as r:  # noqa: S310
                body_bytes = r.read()
        except urllib.error.HTTPError as err:
            body_bytes = err.read()
            try:
                status = json.loads(body_bytes)
            except ValueError:
                status = {}
            message = status.get("message", body_bytes[:300].decode(errors="replace"))
            raise ApiError(err.code, str(status.get("reason", "")), str(message)) from None
        if raw:
            return body_bytes.decode(errors="replace")
        return json.loads(body_bytes) if body_bytes else {}

    def get(self, path: str, **query: str) -> Any:
        return self.request("GET", path, query=query or None)

    def find(self, path: str) -> Any | None:
        """The object at ``path``, or None when it does not exist."""
        try:
            return self.get(path)
        except ApiError as err:
            if err.status == 404:
                return None
            raise

    def create(self, path: str, body: Any) -> Any:
        return self.request("POST", path, body)

    def patch(self, path: str, body: Any, content_type: str = MERGE_PATCH) -> Any:
        return self.request("PATCH", path, body, content_type=content_type)

    def delete(self, path: str, body: Any = None) -> Any:
        return self.request("DELETE", path, body)
