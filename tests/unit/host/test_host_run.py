"""The program runner: errors carry the program and stderr, never the environment."""

from __future__ import annotations

import pytest

from csi_disk.errors import DeadlineExceeded, Unavailable
from csi_disk.host.run import CommandFailed, run, trim


def test_returns_output_as_text() -> None:
    result = run(["sh", "-c", "printf out; printf err >&2"], timeout=10)
    assert (result.returncode, result.stdout, result.stderr) == (0, "out", "err")


def test_input_reaches_the_program() -> None:
    assert run(["cat"], timeout=10, input="hello\n").stdout == "hello\n"


def test_missing_program_is_unavailable() -> None:
    with pytest.raises(Unavailable, match="no-such-program-xyz"):
        run(["/nonexistent/no-such-program-xyz", "arg"], timeout=10)


def test_timeout_is_deadline_exceeded() -> None:
    with pytest.raises(DeadlineExceeded, match="sleep"):
        run(["sleep", "30"], timeout=0.2)


def test_failure_names_program_and_trimmed_stderr() -> None:
    with pytest.raises(CommandFailed) as caught:
        run(["sh", "-c", "echo 'first line' >&2; echo '  second   line' >&2; exit 3"], timeout=10)
    err = caught.value
    assert err.returncode == 3
    assert err.program == "sh"
    assert err.message == "sh failed with exit code 3: first line second line"
    assert err.code == "INTERNAL"


def test_no_check_returns_failure_code() -> None:
    assert run(["sh", "-c", "exit 5"], timeout=10, check=False).returncode == 5


def test_secrets_in_our_environment_do_not_reach_programs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "very-secret-value")
    result = run(["env"], timeout=10)
    assert "very-secret-value" not in result.stdout
    assert "PATH=" in result.stdout
    with pytest.raises(CommandFailed) as caught:
        run(["sh", "-c", 'echo "got:$ALIBABA_CLOUD_ACCESS_KEY_SECRET" >&2; exit 1'], timeout=10)
    assert "very-secret-value" not in caught.value.message
    assert "sh" in caught.value.message


def test_long_stderr_is_trimmed() -> None:
    text = "x" * 2000
    assert len(trim(text)) == 400
    assert trim(text).endswith("...")
