"""``pubsub retention run``: apply every topic's retention and compaction once (for cron)."""

from typing import TYPE_CHECKING, Annotated, Any

import typer

from pubsub.commands._common import (
    JsonOption,
    human_bytes,
    interrupt_on_sigterm,
    note,
    state,
    topic_names,
)
from pubsub.commands._output import emit
from pubsub.words import counted

if TYPE_CHECKING:
    from pubsub.retention import RetentionReport

app = typer.Typer(
    help="Delete what retention policies say may go, and compact compacted topics.",
    no_args_is_help=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _report_json(report: "RetentionReport") -> dict[str, Any]:
    return {
        "dry_run": report.dry_run,
        "skipped": report.skipped,
        "deleted_records": report.deleted_records,
        "deleted_bytes": report.deleted_bytes,
        "partitions_checked": len(report.partitions),
        "vacuumed_pages": report.vacuumed_pages,
        "wal_checkpointed": report.wal_checkpointed,
        "held": list(report.held),
        "reserve_released": report.reserve_released,
        "disk_full": report.disk_full,
        "started_ms": report.started_ms,
        "finished_ms": report.finished_ms,
        "partitions": [
            {**p._asdict(), "reasons": list(p.reasons)}
            for p in report.partitions
            if p.deleted_records
        ],
    }


def summary(report: "RetentionReport") -> str:
    """The one-line summary of a sweep."""
    if report.skipped:
        return f"retention: skipped: {report.skipped}"
    touched = sum(1 for p in report.partitions if p.deleted_records)
    verb = "would delete" if report.dry_run else "deleted"
    seconds = (report.finished_ms - report.started_ms) / 1000
    line = (
        f"retention: {verb} {counted(report.deleted_records, 'record')} "
        f"({human_bytes(report.deleted_bytes)}) from {touched} of "
        f"{counted(len(report.partitions), 'partition')} in {seconds:.1f} s"
    )
    if report.vacuumed_pages:
        line += f"; returned {counted(report.vacuumed_pages, 'free page')} to the file system"
    if report.wal_checkpointed:
        line += "; WAL truncated"
    if report.reserve_released:
        line += "; the disk was full: used the reserve file"
    return line


def full_disk_hint(report: "RetentionReport") -> str | None:
    """A warning and what to do when the disk is full and this sweep could not help."""
    if not report.disk_full or report.deleted_records or report.skipped:
        return None
    return (
        "warning: the disk is full and no policy deletes anything yet\n"
        "hint: set one ('pubsub topic alter TOPIC --config retention.messages=N' or "
        "--retention 1d) and run retention again, or 'pubsub topic truncate TOPIC'"
    )


@app.command("run")
def retention_run(
    ctx: typer.Context,
    topic: Annotated[
        list[str] | None,
        typer.Option(
            "--topic",
            "-t",
            help="Only this topic (repeatable). Default: all.",
            callback=topic_names,
        ),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Report what would be deleted; delete nothing.")
    ] = False,
    vacuum: Annotated[
        bool,
        typer.Option("--vacuum", help="Afterwards return freed pages to the file system."),
    ] = False,
    wal_cap: Annotated[
        str,
        typer.Option(
            "--wal-cap",
            help="Checkpoint and truncate the WAL afterwards if it is larger than this.",
            metavar="SIZE",
        ),
    ] = "64MiB",
    as_json: JsonOption = False,
) -> None:
    """Apply retention (retention.ms, .bytes, .messages, .consumed) and compaction once.

    Deletes in short transactions, so producers and consumers keep working; a second run
    started while one is going (overlapping cron jobs) does nothing. Without --json on a
    terminal it prints a table of the partitions it changed and a summary line.

    Examples:

      pubsub retention run
      pubsub retention run --dry-run --topic logs
      pubsub retention run --vacuum --json >> /var/log/pubsub-retention.jsonl
    """
    from pubsub import config

    cap = config.parse_size(wal_cap)
    interrupt_on_sigterm()
    from pubsub.commands._render import Progress

    with state(ctx).broker() as broker, Progress("retention", unit="partitions") as bar:

        def progress(done: float, total: float, what: str) -> None:
            bar.update(done, total=total, description=f"retention {what}" if what else None)

        report = broker.run_retention(
            topic or None, dry_run=dry_run, vacuum=vacuum, wal_cap=cap, progress=progress
        )
    if emit([_report_json(report)], as_json=as_json, render=lambda: _render_report(report)):
        note(summary(report))
    for line in report.held:
        note(f"held back: {line}")
    hint = full_disk_hint(report)
    if hint:
        note(hint)


def _render_report(report: "RetentionReport") -> None:
    """The partitions a sweep changed, as a table, and the summary line (on stdout)."""
    changed = [p for p in report.partitions if p.deleted_records]
    if changed:
        from pubsub.commands import _render

        _render.table(
            ("topic", "partition", "records", "size", "log start", "because"),
            [
                (
                    p.topic,
                    p.partition,
                    f"{p.deleted_records:,}",
                    human_bytes(p.deleted_bytes),
                    p.log_start_offset,
                    ", ".join(p.reasons),
                )
                for p in changed
            ],
            title="would delete" if report.dry_run else "deleted",
            numeric=(1, 2, 3, 4),
        )
    print(summary(report))
