"""Shared pieces of the pytest-benchmark suites."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def show_table(request):
    """``show(text)``: write a results table to the terminal, past pytest's output capture (a
    module fixture's teardown output is captured otherwise)."""

    def show(text: str) -> None:
        reporter = request.config.pluginmanager.get_plugin("terminalreporter")
        capture = request.config.pluginmanager.get_plugin("capturemanager")
        if reporter is None or capture is None:  # pragma: no cover
            print(text)
            return
        with capture.global_and_fixture_disabled():
            reporter.write_line("")
            for line in text.splitlines():
                reporter.write_line(line)

    return show
