"""The credential chain, the STS file and the RAM role refresh."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any

import pytest

from csi_disk.cloud.credentials import (
    Credentials,
    RamRoleProvider,
    StaticProvider,
    StsFileProvider,
    parse_expiration,
    resolve_provider,
)
from csi_disk.cloud.errors import scrub
from csi_disk.config import Config
from csi_disk.errors import Unavailable


class FakeMetadata:
    """Hands out numbered role credentials expiring at ``expires``."""

    def __init__(self, expires: str = "2030-01-01T00:00:00Z") -> None:
        self.expires = expires
        self.fetches = 0
        self.fail = False

    def ram_role(self) -> str:
        return "csi-role"

    def role_credentials(self, role: str) -> dict[str, Any]:
        if self.fail:
            raise Unavailable("metadata down")
        self.fetches += 1
        return {
            "AccessKeyId": f"STS.id{self.fetches}",
            "AccessKeySecret": f"role-secret-{self.fetches}",
            "SecurityToken": f"role-token-{self.fetches}",
            "Expiration": self.expires,
        }


def sts_doc(n: int) -> str:
    return json.dumps(
        {
            "AccessKeyId": f"STS.file{n}",
            "AccessKeySecret": f"file-secret-{n}",
            "SecurityToken": f"file-token-{n}",
            "Expiration": "2030-01-01T00:00:00Z",
        }
    )


def test_repr_hides_secret_and_token() -> None:
    creds = Credentials("LTAI5tABCDEF", "the-secret-value", "the-token-value", source="x")
    for text in (repr(creds), str(creds), f"{creds}", repr([creds])):
        assert "the-secret-value" not in text
        assert "the-token-value" not in text
        assert "LTAI5tABCDEF" not in text


def test_config_keys_win_over_everything(tmp_path: Path) -> None:
    env = {
        "ALIBABA_CLOUD_ACCESS_KEY_ID": "env-id",
        "ALIBABA_CLOUD_ACCESS_KEY_SECRET": "env-secret",
        "ALIBABA_CLOUD_STS_TOKEN_FILE": str(tmp_path / "t.json"),
    }
    cfg = Config(access_key_id="cfg-id", access_key_secret="cfg-secret")
    creds = resolve_provider(cfg, env=env, metadata=FakeMetadata()).get()  # type: ignore[arg-type]
    assert (creds.access_key_id, creds.source) == ("cfg-id", "config")


def test_env_order_then_aliases() -> None:
    both = {
        "ALIBABA_CLOUD_ACCESS_KEY_ID": "a-id",
        "ALIBABA_CLOUD_ACCESS_KEY_SECRET": "a-secret",
        "ACCESS_KEY_ID": "b-id",
        "ACCESS_KEY_SECRET": "b-secret",
    }
    assert resolve_provider(Config(), env=both).get().access_key_id == "a-id"
    alias = {"ACCESS_KEY_ID": "b-id", "ACCESS_KEY_SECRET": "b-secret"}
    assert resolve_provider(Config(), env=alias).get().access_key_id == "b-id"
    half = {
        "ALIBABA_CLOUD_ACCESS_KEY_ID": "a-id",
        "ACCESS_KEY_ID": "b-id",
        "ACCESS_KEY_SECRET": "s",
    }
    assert resolve_provider(Config(), env=half).get().access_key_id == "b-id"


def test_sts_file_comes_before_the_role(tmp_path: Path) -> None:
    path = tmp_path / "token.json"
    path.write_text(sts_doc(1))
    from_env = resolve_provider(Config(), env={"ALIBABA_CLOUD_STS_TOKEN_FILE": str(path)})
    assert isinstance(from_env, StsFileProvider)
    from_cfg = resolve_provider(Config(sts_token_file=str(path)), env={})
    assert from_cfg.get().security_token == "file-token-1"


def test_role_is_the_last_resort() -> None:
    md = FakeMetadata()
    provider = resolve_provider(Config(), env={}, metadata=md)  # type: ignore[arg-type]
    assert isinstance(provider, RamRoleProvider)
    assert md.fetches == 0  # nothing is fetched until credentials are needed
    assert provider.get().access_key_id == "STS.id1"


def test_sts_file_is_reread_when_it_changes(tmp_path: Path) -> None:
    path = tmp_path / "token.json"
    path.write_text(sts_doc(1))
    os.utime(path, ns=(1_000_000_000, 1_000_000_000))
    provider = StsFileProvider(path)
    assert provider.get().access_key_id == "STS.file1"
    assert provider.get().access_key_id == "STS.file1"
    path.write_text(sts_doc(2))
    os.utime(path, ns=(2_000_000_000, 2_000_000_000))
    creds = provider.get()
    assert (creds.access_key_id, creds.security_token) == ("STS.file2", "file-token-2")
    assert creds.expiration == parse_expiration("2030-01-01T00:00:00Z")


def test_sts_file_errors_are_unavailable_and_safe(tmp_path: Path) -> None:
    path = tmp_path / "token.json"
    with pytest.raises(Unavailable):
        StsFileProvider(path).get()
    path.write_text("{not json")
    with pytest.raises(Unavailable):
        StsFileProvider(path).get()
    path.write_text(json.dumps({"AccessKeyId": "x"}))
    with pytest.raises(Unavailable):
        StsFileProvider(path).get()


def test_loaded_secrets_are_scrubbed_everywhere(tmp_path: Path) -> None:
    path = tmp_path / "token.json"
    path.write_text(sts_doc(7))
    StsFileProvider(path).get()
    assert "file-secret-7" not in scrub("oops: file-secret-7 and file-token-7")
    assert "file-token-7" not in scrub("oops: file-secret-7 and file-token-7")


def test_role_refreshes_before_expiry() -> None:
    md = FakeMetadata("2030-01-01T00:00:00Z")
    expiry = parse_expiration(md.expires)
    assert expiry is not None
    now = {"t": expiry - 3600}
    provider = RamRoleProvider(md, margin=300, clock=lambda: now["t"])  # type: ignore[arg-type]
    assert provider.get().access_key_id == "STS.id1"
    now["t"] = expiry - 301
    assert provider.get().access_key_id == "STS.id1"
    now["t"] = expiry - 299  # inside the margin: renew although still valid
    assert provider.get().access_key_id == "STS.id2"
    assert md.fetches == 2


def test_invalidate_forces_a_refresh() -> None:
    md = FakeMetadata()
    provider = RamRoleProvider(md, "csi-role", clock=lambda: 0.0)  # type: ignore[arg-type]
    assert provider.get().security_token == "role-token-1"
    provider.invalidate()
    assert provider.get().security_token == "role-token-2"


def test_role_keeps_valid_credentials_through_a_metadata_blip() -> None:
    md = FakeMetadata("2030-01-01T00:00:00Z")
    expiry = parse_expiration(md.expires)
    assert expiry is not None
    now = {"t": expiry - 3600}
    provider = RamRoleProvider(md, margin=300, clock=lambda: now["t"])  # type: ignore[arg-type]
    provider.get()
    md.fail = True
    now["t"] = expiry - 100
    assert provider.get().access_key_id == "STS.id1"
    now["t"] = expiry + 1
    with pytest.raises(Unavailable):
        provider.get()


def test_static_provider_is_stable() -> None:
    provider = StaticProvider(Credentials("id", "secret-static-1"))
    provider.invalidate()
    assert provider.get() == Credentials("id", "secret-static-1")


def test_invalidating_replaced_credentials_changes_nothing() -> None:
    md = FakeMetadata()
    provider = RamRoleProvider(md, "csi-role", clock=lambda: 0.0)  # type: ignore[arg-type]
    first = provider.get()
    provider.invalidate(first)
    second = provider.get()
    provider.invalidate(first)  # a late report about the token already replaced
    assert provider.get() is second
    assert md.fetches == 2


class SlowMetadata(FakeMetadata):
    """Holds every fetch until the test releases it, so callers pile up behind one."""

    def __init__(self) -> None:
        super().__init__()
        self.entered = threading.Event()
        self.release = threading.Event()

    def role_credentials(self, role: str) -> dict[str, Any]:
        self.entered.set()
        assert self.release.wait(10)
        return super().role_credentials(role)


def _run_all(n: int, fn: Any) -> tuple[list[threading.Thread], list[Any]]:
    """Start ``n`` threads calling ``fn``; each one's result or error lands in the list."""
    results: list[Any] = [None] * n

    def run(i: int) -> None:
        try:
            results[i] = fn()
        except Exception as err:
            results[i] = err

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    return threads, results


def test_concurrent_refresh_is_one_fetch_shared_by_every_caller() -> None:
    md = SlowMetadata()
    provider = RamRoleProvider(md, "csi-role", clock=lambda: 0.0)  # type: ignore[arg-type]
    threads, results = _run_all(50, provider.get)
    assert md.entered.wait(10)
    md.release.set()
    for t in threads:
        t.join(10)
    assert md.fetches == 1
    assert {r.security_token for r in results} == {"role-token-1"}


def test_a_failed_shared_refresh_fails_every_waiting_caller() -> None:
    md = SlowMetadata()
    md.fail = True
    provider = RamRoleProvider(md, "csi-role", clock=lambda: 0.0)  # type: ignore[arg-type]
    threads, results = _run_all(20, provider.get)
    assert md.entered.wait(10)
    md.release.set()
    for t in threads:
        t.join(10)
    assert all(isinstance(r, Unavailable) for r in results)
    md.fail = False
    assert provider.get().security_token == "role-token-1"


def test_callers_keep_valid_credentials_while_one_renews_them() -> None:
    md = SlowMetadata()
    md.release.set()
    expiry = parse_expiration(md.expires)
    assert expiry is not None
    now = {"t": expiry - 3600}
    provider = RamRoleProvider(md, margin=300, clock=lambda: now["t"])  # type: ignore[arg-type]
    first = provider.get()
    md.release.clear()
    md.entered.clear()
    now["t"] = expiry - 100  # due for renewal, still valid
    threads, _ = _run_all(1, provider.get)
    assert md.entered.wait(10)
    assert provider.get() is first  # does not block behind the renewal
    md.expires = "2031-01-01T00:00:00Z"
    md.release.set()
    for t in threads:
        t.join(10)
    assert provider.get().security_token == "role-token-2"


def test_sts_file_invalidate_ignores_replaced_credentials(tmp_path: Path) -> None:
    path = tmp_path / "token.json"
    path.write_text(sts_doc(1))
    provider = StsFileProvider(path)
    first = provider.get()
    provider.invalidate(Credentials("other", "other-secret"))
    assert provider._stamp is not None
    provider.invalidate(first)
    assert provider._stamp is None
    assert provider.get() == first
