"""Fetch what the Kafka tests need into the test cache now: ``python -m tests.support.prefetch``.

The tests fetch on first use anyway; this does it ahead (before going offline, say) and prints
where each thing went and how long it took.
"""

from __future__ import annotations

import sys
import time

from tests.support.cache import FetchError, cache_root
from tests.support.kafka_jars import kafka_libs, kafka_version
from tests.support.kcat import kcat_path


def main() -> int:
    print(f"cache: {cache_root()}")
    for name, fetch in ((f"Kafka {kafka_version()} jars", kafka_libs), ("kcat", kcat_path)):
        began = time.monotonic()
        try:
            where = fetch()
        except FetchError as e:
            print(f"error: {name}: {e}", file=sys.stderr)
            return 1
        print(f"{name}: {where} ({time.monotonic() - began:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
