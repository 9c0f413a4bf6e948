"""The fault suites' summary: every suite reports what it injected and what it checked.

``make test`` runs the reduced counts; ``make soak`` sets ``PUBSUB_SOAK=1`` for the full ones.
Both print a table at the end of the run (and write it as JSON to
``$PUBSUB_RELIABILITY_REPORT`` when that is set).
"""

from __future__ import annotations

import json
import os
from typing import Any

import pytest

ROWS: list[dict[str, Any]] = []


@pytest.fixture
def record_summary():  # type: ignore[no-untyped-def]
    """``record_summary(suite, faults=..., checks=..., **figures)`` adds a row to the table."""

    def add(suite: str, *, faults: str, checks: str, **figures: object) -> None:
        ROWS.append({"suite": suite, "faults": faults, "checks": checks, **figures})

    return add


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not ROWS:
        return
    write = terminalreporter.write_line
    mode = "soak" if os.environ.get("PUBSUB_SOAK") else "test"
    terminalreporter.section(f"reliability summary ({mode} counts)")
    write("| suite | faults injected | invariants | figures |")
    write("|---|---|---|---|")
    for row in ROWS:
        figures = ", ".join(
            f"{k}={v:,}" if isinstance(v, int) else f"{k}={v}"
            for k, v in row.items()
            if k not in ("suite", "faults", "checks")
        )
        write(f"| {row['suite']} | {row['faults']} | {row['checks']} | {figures} |")
    path = os.environ.get("PUBSUB_RELIABILITY_REPORT")
    if path:
        with open(path, "w", encoding="utf-8") as out:
            json.dump({"mode": mode, "rows": ROWS}, out, indent=2)
