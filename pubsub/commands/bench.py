"""``pubsub bench``: measure this machine, against raw sqlite3 doing the same work."""

from typing import TYPE_CHECKING, Annotated

import typer

from pubsub.commands._common import (
    JsonOption,
    SyncChoice,
    fail,
    finite,
)
from pubsub.commands._output import emit
from pubsub.words import counted

if TYPE_CHECKING:
    from pubsub.bench import BenchResult, Workload

app = typer.Typer(
    help="Benchmark pubsub on this machine (throughput, latency) against raw sqlite3.",
    no_args_is_help=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

Records = Annotated[int, typer.Option("--records", "-n", min=1, help="Records to move.")]
Size = Annotated[int, typer.Option("--size", "-s", min=8, help="Bytes per value.")]
Partitions = Annotated[
    int, typer.Option("--partitions", "-P", min=1, max=1024, help="Partitions of the topic.")
]
Batch = Annotated[int, typer.Option("--batch", "-b", min=1, help="Records per call / poll.")]
Sync = Annotated[
    SyncChoice, typer.Option("--sync", case_sensitive=False, help="Durability to measure.")
]
Db = Annotated[
    str | None,
    typer.Option(
        "--db",
        help="Run on this file instead of a temporary database, e.g. to test a particular SD "
        "card. Only a missing or empty file or an earlier bench run's file is replaced; "
        "anything else is refused (exit 4) and left as it was.",
    ),
]


def _run(workload: "Workload", db: str | None, as_json: bool) -> None:
    from pubsub.bench import as_dict, run
    from pubsub.commands._render import Progress

    with Progress("benchmarking", 1.0, unit="fraction", delay=0) as bar:
        result = run(
            workload,
            db=db,
            progress=lambda what, done: bar.update(done, description=what),
        )
    emit(
        [{**as_dict(result), "parameters": workload._asdict()}],
        as_json=as_json,
        render=lambda: _render(result),
    )


def _fmt(latency: dict[str, float]) -> str:
    if not latency:
        return ""
    return f"{latency['p50']:.2f} / {latency['p99']:.2f} / {latency['max']:.1f}"


def _render(result: "BenchResult") -> None:
    from pubsub.commands import _render

    if result.name == "cli":
        assert result.raw_seconds is not None
        _render.table(
            ("one-shot 'pubsub produce'", "python -c 'import typer'", "ratio (lower is better)"),
            [
                (
                    f"{result.seconds * 1000:.1f} ms",
                    f"{result.raw_seconds * 1000:.1f} ms",
                    f"{result.seconds / result.raw_seconds:.2f}",
                )
            ],
        )
    else:
        _render.table(
            ("", "records/s", "latency ms p50 / p99 / max"),
            [
                ("pubsub", f"{result.rate:,.0f}", _fmt(result.latency_ms)),
                *(
                    [("raw sqlite3", f"{result.raw_rate:,.0f}", _fmt(result.raw_latency_ms))]
                    if result.raw_rate
                    else []
                ),
                *([("ratio", f"{result.ratio:.2f}", "")] if result.ratio else []),
            ],
            title=f"{result.name}: {counted(result.records, 'record')} in {result.seconds:.2f} s",
            numeric=(1,),
        )
    print(result.note)


@app.command("produce")
def bench_produce(
    records: Records = 200_000,
    size: Size = 100,
    partitions: Partitions = 1,
    batch: Batch = 1000,
    producers: Annotated[
        int, typer.Option("--producers", min=1, max=64, help="Producer processes.")
    ] = 1,
    sync: Sync = SyncChoice.full,
    db: Db = None,
    as_json: JsonOption = False,
) -> None:
    """Produce records (in batches, from N processes) vs raw executemany.

    Examples:

      pubsub bench produce
      pubsub bench produce --batch 1 -n 5000
      pubsub bench produce --producers 4 --partitions 8 --db /mnt/sdcard/test.db
    """
    from pubsub.bench import Workload

    _run(
        Workload("produce", records, size, partitions, batch, producers, 1, sync.value),
        db,
        as_json,
    )


@app.command("consume")
def bench_consume(
    records: Records = 200_000,
    size: Size = 100,
    partitions: Partitions = 1,
    batch: Batch = 2000,
    consumers: Annotated[
        int, typer.Option("--consumers", min=1, max=64, help="Consumer processes (one group).")
    ] = 1,
    work_us: Annotated[
        int, typer.Option("--work-us", min=0, help="Simulated work per record, microseconds.")
    ] = 0,
    sync: Sync = SyncChoice.full,
    db: Db = None,
    as_json: JsonOption = False,
) -> None:
    """Consume as a group committing every poll vs raw range reads that commit an offset.

    Examples:

      pubsub bench consume
      pubsub bench consume --consumers 4 --partitions 8 --work-us 100
      pubsub bench consume --db /mnt/sdcard/bench.db
    """
    from pubsub.bench import Workload

    if consumers > partitions:
        fail("more consumers than partitions leaves some idle", "raise --partitions")
    _run(
        Workload("consume", records, size, partitions, batch, 1, consumers, sync.value, work_us),
        db,
        as_json,
    )


@app.command("e2e")
def bench_e2e(
    rate: Annotated[int, typer.Option("--rate", min=1, help="Records per second.")] = 1000,
    seconds: Annotated[
        float, typer.Option("--seconds", min=0.5, help="How long to produce.", callback=finite)
    ] = 5.0,
    size: Size = 100,
    sync: Sync = SyncChoice.full,
    db: Db = None,
    as_json: JsonOption = False,
) -> None:
    """End-to-end latency: this process produces at a rate, a follower process reads.

    Examples:

      pubsub bench e2e --rate 1000
      pubsub bench e2e --sync normal --rate 10000
      pubsub bench e2e --db /mnt/sdcard/bench.db
    """
    from pubsub.bench import Workload

    _run(Workload("e2e", size=size, sync=sync.value, rate=rate, seconds=seconds), db, as_json)


@app.command("cli")
def bench_cli(
    runs: Annotated[
        int, typer.Option("--runs", min=3, help="Processes to start (the median is shown).")
    ] = 20,
    as_json: JsonOption = False,
) -> None:
    """Start-up: one-shot 'pubsub produce t v' processes vs python -c 'import typer'.

    Examples:

      pubsub bench cli --runs 50
    """
    from pubsub.bench import Workload

    _run(Workload("cli", runs=runs), None, as_json)
