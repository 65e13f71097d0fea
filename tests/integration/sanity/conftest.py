"""Shows each csi-sanity run's summary at the end of the pytest session.

pytest captures what a passing test prints, so the test hands its summary to
``sanity_summary`` and ``pytest_terminal_summary`` writes them all in one section: the CI
log shows how many specs passed, failed and were skipped in every configuration, and why.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

_SUMMARIES = pytest.StashKey[list[str]]()


@pytest.fixture
def sanity_summary(request: pytest.FixtureRequest) -> Callable[[str], None]:
    """Record one configuration's summary (a few lines of text) for the session's end."""
    return request.config.stash.setdefault(_SUMMARIES, []).append


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    summaries = terminalreporter.config.stash.get(_SUMMARIES, [])
    if not summaries:
        return
    terminalreporter.section("csi-sanity")
    for text in summaries:
        for line in text.splitlines():
            terminalreporter.write_line(line)
