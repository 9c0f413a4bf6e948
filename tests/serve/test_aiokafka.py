"""aiokafka 0.14 against ``pubsub serve``, as its own processes (``tests/serve/aio_client.py``).

aiokafka picks each request's version from the server's ApiVersions answer: it sent Metadata
v5, Produce v7, Fetch v11, ListOffsets v3, FindCoordinator v1, JoinGroup v5, SyncGroup v3,
LeaveGroup v1, OffsetCommit v3 and OffsetFetch v3 here, all inside the advertised ranges.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest

from tests.helpers import cli_env
from tests.serve.client_checks import check_script, prepare
from tests.serve.members import ROOT, group_of_three_survives_a_sigkill
from tests.serve.support import ServeProcess


def aiokafka_script(bootstrap: str, topic: str, group: str, *dumps: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "tests.serve.aio_client", "script", bootstrap, topic, group, *dumps],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env=cli_env(),
        check=False,
    )
    assert done.returncode == 0, done.stderr
    observed: dict[str, Any] = json.loads(done.stdout)
    return observed


def test_aiokafka_produces_every_codec_and_consumes_from_each_start(serve: ServeProcess) -> None:
    prepare(serve)
    observed = aiokafka_script(serve.bootstrap, "t", "aio", "from-cli:2")
    check_script(serve, observed, "aio")
    assert serve.errors() == ""


def aiokafka_member(bootstrap: str, topic: str, group: str) -> list[str]:
    return [sys.executable, "-m", "tests.serve.aio_client", "member", bootstrap, topic, group]


@pytest.mark.slow
def test_an_aiokafka_group_of_three_processes_survives_a_sigkill(serve: ServeProcess) -> None:
    group_of_three_survives_a_sigkill(
        serve, aiokafka_member, "aio-trio", metadata_prefix="aiokafka member "
    )
