"""The registry of known secret values behind ``scrub``."""

from __future__ import annotations

import pytest

from csi_disk import scrubbing
from csi_disk.scrubbing import MAX_SECRETS, register_secret, scrub


@pytest.fixture(autouse=True)
def fresh_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test gets its own registry: evicting the suite's real secrets would hide leaks."""
    monkeypatch.setattr(scrubbing, "_secrets", scrubbing._Secrets())


def secret(n: int) -> str:
    return f"rotated-token-{n:04d}"


def test_only_the_most_recent_secrets_are_kept() -> None:
    for n in range(MAX_SECRETS + 10):
        register_secret(secret(n))
    assert len(scrubbing._secrets.longest_first()) == MAX_SECRETS
    assert scrub(f"x {secret(MAX_SECRETS + 9)} y") == "x *** y"
    assert scrub(f"x {secret(10)} y") == "x *** y"
    assert scrub(f"x {secret(9)} y") == f"x {secret(9)} y"  # the oldest fell out


def test_registering_again_makes_a_secret_recent() -> None:
    register_secret("the-static-secret")
    for n in range(MAX_SECRETS - 1):
        register_secret(secret(n))
    register_secret("the-static-secret")  # loaded again: must outlive newer ones
    register_secret(secret(1000))
    assert "the-static-secret" not in scrub("the-static-secret")
    assert scrub(secret(0)) == secret(0)


def test_a_secret_registered_after_a_scrub_is_masked() -> None:
    register_secret("first-secret-value")
    assert scrub("first-secret-value") == "***"
    register_secret("second-secret-value")
    assert scrub("first-secret-value second-secret-value") == "*** ***"


def test_longer_secrets_are_masked_before_the_ones_they_contain() -> None:
    register_secret("abcdef")
    register_secret("abcdef-and-more")
    assert scrub("token abcdef-and-more") == "token ***"


def test_short_or_empty_values_are_not_secrets() -> None:
    register_secret("")
    register_secret("abc")
    assert scrubbing._secrets.longest_first() == ()
    assert scrub("abc") == "abc"
