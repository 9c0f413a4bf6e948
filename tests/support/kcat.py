"""kcat (Debian's build, with the librdkafka it links) fetched into the test cache.

The packages below are pinned by version and sha256 (from Debian 12's package index:
``apt-cache show kcat librdkafka1 libyajl2``); the rest of what kcat links (libssl, libsasl2,
libzstd, liblz4, zlib) is part of the base system. They are fetched with ``apt-get download``
and unpacked with ``dpkg-deb -x`` into the cache, never installed, and run through a wrapper
script that sets LD_LIBRARY_PATH. When the system's package lists are missing or stale (no
``apt-get update`` was run, or we are not root), apt reads a private copy of the lists,
fetched into a scratch directory from the system's configured sources, which needs no root.
"""

from __future__ import annotations

import hashlib
import os
import platform
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import NamedTuple

from tests.support.cache import FetchError, cache_root, digest, fetch_once


class Deb(NamedTuple):
    package: str
    version: str
    sha256: str


#: Debian 12 (bookworm), amd64.
PINS: dict[str, tuple[Deb, ...]] = {
    "amd64": (
        Deb("kcat", "1.7.1-2", "c7634113d7db8e9ca840f7f865afd1d13b43014f2dcf591ed3b5744de80030d3"),
        Deb(
            "librdkafka1",
            "2.0.2-1",
            "d565b098c1eb5754a9266515e3c282b1d282400903070cbdc42d0f76a14fd9f7",
        ),
        Deb(
            "libyajl2",
            "2.1.0-3+deb12u2",
            "b512a6efbe735e7c731185a1b3ea477ff306f0c3f6aa2970e85b12f01fe8063b",
        ),
    ),
}
_ARCH = {"x86_64": "amd64"}
_LIB_DIR = {"amd64": "usr/lib/x86_64-linux-gnu"}

WRAPPER = """#!/bin/sh
# kcat from the Debian packages unpacked beside this script, with their libraries.
here=$(cd "$(dirname "$0")" && pwd)
LD_LIBRARY_PATH="$here/root/{lib_dir}${{LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}}" \\
    exec "$here/root/usr/bin/kcat" "$@"
"""


def _arch() -> str:
    arch = _ARCH.get(platform.machine(), platform.machine())
    if arch not in PINS:
        raise FetchError(
            f"no kcat packages are pinned for {arch}: add them to PINS in tests/support/kcat.py"
        )
    return arch


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _apt_download(debs: tuple[Deb, ...], into: Path, options: list[str]) -> str | None:
    """Run ``apt-get download`` for the pinned versions; None on success, else its output."""
    cmd = ["apt-get", *options, "-q", "download", *(f"{d.package}={d.version}" for d in debs)]
    done = subprocess.run(cmd, cwd=into, capture_output=True, text=True, timeout=300, check=False)
    return None if done.returncode == 0 else (done.stdout + done.stderr).strip()


def _sandbox_option() -> str:
    # apt downloads as the user "_apt", who may not be allowed into the cache directory
    # (under root's home, say): download as ourselves instead.
    return f"-o=APT::Sandbox::User={pwd.getpwuid(os.geteuid()).pw_name}"


def _private_apt_options(scratch: Path) -> list[str]:
    """apt options reading package lists from ``scratch`` instead of the system's."""
    state = scratch / "state"
    for d in (state / "lists" / "partial", scratch / "cache" / "archives" / "partial"):
        d.mkdir(parents=True, exist_ok=True)
    return [
        f"-o=Dir::State={state}",
        f"-o=Dir::State::Lists={state / 'lists'}",
        "-o=Dir::State::status=/var/lib/dpkg/status",
        f"-o=Dir::Cache={scratch / 'cache'}",
        "-o=Debug::NoLocking=1",
        _sandbox_option(),
        "-o=Acquire::Languages=none",
    ]


def _download(debs: tuple[Deb, ...], into: Path) -> None:
    if not shutil.which("apt-get") or not shutil.which("dpkg-deb"):
        raise FetchError("kcat is fetched from Debian's packages: apt-get and dpkg-deb are needed")
    if _apt_download(debs, into, [_sandbox_option()]) is None:
        return
    with tempfile.TemporaryDirectory(prefix="pubsub-apt-") as scratch:
        options = _private_apt_options(Path(scratch))
        update = subprocess.run(
            ["apt-get", *options, "-q", "update"],
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        if update.returncode != 0:
            raise FetchError(
                "apt-get update (private package lists) failed; is Debian's archive "
                f"reachable?\n{update.stdout}{update.stderr}"
            )
        failure = _apt_download(debs, into, options)
    if failure is not None:
        raise FetchError(
            "apt-get download of the pinned kcat packages failed; if Debian replaced one of "
            "these versions, update PINS in tests/support/kcat.py from "
            f"`apt-cache show kcat librdkafka1 libyajl2`\n{failure}"
        )


def kcat_home() -> Path:
    """The cache entry holding kcat's unpacked packages and its wrapper (fetched if needed)."""
    arch = _arch()
    debs = PINS[arch]
    kcat = debs[0]
    entry = cache_root() / f"kcat-{kcat.version}-{digest(arch, *map(repr, debs))}"

    def build(staging: Path) -> None:
        downloads = staging / "debs"
        downloads.mkdir()
        _download(debs, downloads)
        root = staging / "root"
        for deb in debs:
            [path] = downloads.glob(f"{deb.package}_*.deb")
            if _sha256(path) != deb.sha256:
                raise FetchError(
                    f"{path.name}: sha256 {_sha256(path)} is not the pinned {deb.sha256}"
                )
            subprocess.run(["dpkg-deb", "-x", str(path), str(root)], check=True, timeout=60)
        shutil.rmtree(downloads)
        wrapper = staging / "kcat"
        wrapper.write_text(WRAPPER.format(lib_dir=_LIB_DIR[arch]))
        wrapper.chmod(0o755)
        _check_runs(wrapper)

    return fetch_once(entry, build)


def _check_runs(wrapper: Path) -> None:
    done = subprocess.run(
        [str(wrapper), "-V"], capture_output=True, text=True, timeout=30, check=False
    )
    if done.returncode != 0 or "librdkafka" not in done.stdout:
        raise FetchError(
            f"the fetched kcat does not run (exit {done.returncode}); a library the base "
            f"system should have may be missing (see `ldd`):\n{done.stdout}{done.stderr}"
        )


def kcat_path() -> Path:
    """The kcat wrapper script (fetched if needed)."""
    return kcat_home() / "kcat"
