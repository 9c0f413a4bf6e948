"""Scaling curves as a picture: produce throughput vs batch size and vs partition count.

Run: .venv/bin/pip install -e '.[bench]' && .venv/bin/python benchmarks/plot_scaling.py
     [--records 100000] [--repeats 3] [--out docs/img/scaling.png] [--json OUT]

Every point is the median of ``--repeats`` ``pubsub bench produce`` workloads (pubsub, then raw
sqlite3 doing the same work in the same run), synchronous=FULL, 100-byte values. The lower
panels show the ratio pubsub / raw of each point, which is what the noise of a shared machine
disturbs least.
"""

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

from pubsub.bench import Workload, run


def measure(
    records: int, batch: int, partitions: int, producers: int = 1, repeats: int = 3
) -> dict[str, Any]:
    rates, raws, ratios = [], [], []
    for _ in range(repeats):
        result = run(Workload("produce", records=records, batch=batch, partitions=partitions,
                              producers=producers))  # fmt: skip
        rates.append(result.rate)
        raws.append(result.raw_rate or 0.0)
        ratios.append(result.rate / (result.raw_rate or 1.0))
    row = {"batch": batch, "partitions": partitions, "producers": producers,
           "pubsub": statistics.median(rates), "raw": statistics.median(raws),
           "ratio": statistics.median(ratios)}  # fmt: skip
    print(
        f"batch {batch:>6} partitions {partitions:>3} producers {producers}: "
        f"pubsub {row['pubsub']:>10,.0f}/s raw {row['raw']:>10,.0f}/s "
        f"ratio {row['ratio']:.2f}",
        file=sys.stderr,
        flush=True,
    )
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--out", default="docs/img/scaling.png")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", dest="json_out")
    args = parser.parse_args()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    batches = [1, 10, 100, 1000, 10_000]
    by_batch = [
        measure(min(args.records, 20_000) if b == 1 else args.records, b, 1, 1, args.repeats)
        for b in batches
    ]
    partitions = [1, 2, 4, 8, 16]
    by_partitions = [measure(args.records, 1000, p, 1, args.repeats) for p in partitions]
    producers = [1, 2, 4]
    by_producers = [measure(args.records, 1000, 4, n, args.repeats) for n in producers]

    figure, axes = plt.subplots(
        2, 3, figsize=(15, 7), gridspec_kw={"height_ratios": [3, 1.3]}, sharex="col"
    )
    for column, (rows, key, label) in enumerate(
        (
            (by_batch, "batch", "records per produce_batch call"),
            (by_partitions, "partitions", "partitions (batches of 1,000)"),
            (by_producers, "producers", "producer processes (4 partitions, batches of 1,000)"),
        )
    ):
        top, bottom = axes[0][column], axes[1][column]
        xs = [row[key] for row in rows]
        top.plot(xs, [row["pubsub"] for row in rows], "o-", label="pubsub")
        top.plot(xs, [row["raw"] for row in rows], "s--", label="raw sqlite3, same work")
        if key == "batch":
            top.set_xscale("log")
            top.set_yscale("log")
        else:
            top.set_ylim(bottom=0)
        top.set_ylabel("records/s")
        top.grid(True, alpha=0.3)
        top.legend()
        bottom.plot(xs, [row["ratio"] for row in rows], "o-", color="tab:green")
        bottom.axhline(1.0, color="grey", linewidth=0.8)
        bottom.set_ylim(0, 1.5)
        bottom.set_ylabel("pubsub / raw")
        bottom.set_xlabel(label)
        bottom.grid(True, alpha=0.3)
    figure.suptitle("pubsub produce throughput, synchronous=FULL, 100-byte values")
    figure.tight_layout()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=100)
    print(f"wrote {out}", file=sys.stderr)
    if args.json_out:
        Path(args.json_out).write_text(
            json.dumps(
                {"batch": by_batch, "partitions": by_partitions, "producers": by_producers},
                indent=2,
            )
        )


if __name__ == "__main__":
    main()
