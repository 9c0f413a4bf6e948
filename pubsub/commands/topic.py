"""``pubsub topic``: create, list, describe, alter and delete topics."""

import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING, Annotated, Any

import typer

from pubsub.commands._common import (
    JsonOption,
    complete_topic,
    fail,
    human_bytes,
    human_ms,
    iso_time,
    note,
    state,
    topic_names,
)
from pubsub.commands._output import emit
from pubsub.errors import TopicNotFoundError

if TYPE_CHECKING:
    from pubsub.records import TopicInfo

app = typer.Typer(
    help="Create, list, describe, alter and delete topics.",
    no_args_is_help=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

PartitionsOption = Annotated[
    int | None, typer.Option("--partitions", "-P", help="Number of partitions.", min=1)
]
RetentionOption = Annotated[
    str | None,
    typer.Option(
        "--retention",
        help="Delete records older than this (7d, 12h, 30m, 500ms; -1 keeps them). "
        "Stored now, enforced by 'pubsub retention run'.",
        metavar="DURATION",
    ),
]
RetentionBytesOption = Annotated[
    str | None,
    typer.Option(
        "--retention-bytes",
        help="Per partition, keep at most this many bytes (512MB, 1GiB; -1: no limit).",
        metavar="SIZE",
    ),
]
MaxMessageBytesOption = Annotated[
    str | None,
    typer.Option(
        "--max-message-bytes",
        help="The largest record (key + value + headers) accepted, e.g. 1MiB.",
        metavar="SIZE",
    ),
]
ConfigOption = Annotated[
    list[str] | None,
    typer.Option(
        "--config",
        "-c",
        help="A topic config KEY=VALUE (repeatable), e.g. retention.ms=7d, cleanup.policy=compact.",
        metavar="KEY=VALUE",
    ),
]


def _config_from_options(
    retention: str | None,
    retention_bytes: str | None,
    max_message_bytes: str | None,
    pairs: list[str] | None,
) -> dict[str, str]:
    from pubsub import config

    values = config.parse_config_pairs(pairs or [])
    if retention is not None:
        values["retention.ms"] = str(config.parse_duration(retention, allow_forever=True))
    if retention_bytes is not None:
        values["retention.bytes"] = str(config.parse_size(retention_bytes, allow_forever=True))
    if max_message_bytes is not None:
        values["max.message.bytes"] = str(config.parse_size(max_message_bytes))
    return config.normalise_config(values)


def _topic_json(topic: "TopicInfo", *, partitions: bool) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": topic.name,
        "partitions": topic.partitions,
        "records": topic.records,
        "bytes": topic.bytes,
        "created": topic.created_ms,
        "config": dict(topic.config),
        "overrides": dict(topic.overrides),
    }
    if partitions:
        data["partition_info"] = [
            {
                "partition": p.partition,
                "log_start_offset": p.log_start_offset,
                "next_offset": p.next_offset,
                "records": p.records,
                "bytes": p.bytes,
                "max_timestamp": p.max_timestamp,
            }
            for p in topic.partition_info
        ]
    return data


def _human_config(key: str, value: str) -> str:
    """'604800000' for retention.ms reads as '7d'; sizes as KiB/MiB."""
    if key.endswith(".ms") and value.lstrip("-").isdigit():
        return human_ms(int(value))
    if key.endswith(".bytes") and value.lstrip("-").isdigit():
        return "unlimited" if int(value) < 0 else human_bytes(int(value))
    if key == "retention.messages" and value == "-1":
        return "unlimited"
    return value


def retention_summary(config: Mapping[str, str]) -> str:
    """The policies that delete a topic's records, for a table: '7d, 1.0 GiB/partition'.

    The delete policies apply only when cleanup.policy contains ``delete``; 'forever' when
    nothing ever deletes a record.
    """
    policies = set(config.get("cleanup.policy", "delete").split(","))
    parts: list[str] = []
    if "delete" in policies:
        ms = int(config.get("retention.ms", "-1"))
        if ms >= 0:
            parts.append(human_ms(ms))
        size = int(config.get("retention.bytes", "-1"))
        if size >= 0:
            parts.append(f"{human_bytes(size)}/partition")
        count = int(config.get("retention.messages", "-1"))
        if count >= 0:
            parts.append(f"{count:,} record{'' if count == 1 else 's'}/partition")
        if config.get("retention.consumed") == "true":
            parts.append("consumed")
    if "compact" in policies:
        parts.append("compact")
    return ", ".join(parts) or "forever"


@app.command("create")
def topic_create(
    ctx: typer.Context,
    name: Annotated[
        str,
        typer.Argument(help="The topic name: A-Z a-z 0-9 . _ -, up to 249.", callback=topic_names),
    ],
    partitions: PartitionsOption = None,
    retention: RetentionOption = None,
    retention_bytes: RetentionBytesOption = None,
    max_message_bytes: MaxMessageBytesOption = None,
    config: ConfigOption = None,
    if_not_exists: Annotated[
        bool, typer.Option("--if-not-exists", help="Succeed if the topic already exists.")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Create a topic.

    Examples:

      pubsub topic create orders --partitions 3 --retention 7d
      pubsub topic create state --config cleanup.policy=compact --if-not-exists
    """
    values = _config_from_options(retention, retention_bytes, max_message_bytes, config)
    with state(ctx).client(create=True) as client:
        topic = client.create_topic(
            name, partitions if partitions is not None else 1, values, if_not_exists=if_not_exists
        )
    emit(
        [_topic_json(topic, partitions=True)],
        as_json=as_json,
        render=lambda: note(f"topic {topic.name}: created with {topic.partitions} partition(s)"),
        json_when_piped=False,
    )


@app.command("list")
def topic_list(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """List topics: partitions, records, bytes and retention.

    Examples:

      pubsub topic list
      pubsub topic list --json | jq -r .name
    """
    with state(ctx).client() as client:
        topics = client.list_topics()
    emit(
        (_topic_json(t, partitions=False) for t in topics),
        as_json=as_json,
        render=lambda: _render_topics(topics),
    )


def _render_topics(topics: "list[TopicInfo]") -> None:
    from pubsub.commands import _render

    _render.table(
        ("topic", "partitions", "records", "size", "retention", "created"),
        [
            (
                t.name,
                t.partitions,
                f"{t.records:,}",
                human_bytes(t.bytes),
                retention_summary(t.config),
                iso_time(t.created_ms),
            )
            for t in topics
        ],
        numeric=(1, 2, 3),
    )


@app.command("describe")
def topic_describe(
    ctx: typer.Context,
    name: Annotated[
        str, typer.Argument(help="The topic.", autocompletion=complete_topic, callback=topic_names)
    ],
    as_json: JsonOption = False,
) -> None:
    """Show a topic's configuration and, per partition, offsets, records and bytes.

    Examples:

      pubsub topic describe orders
      pubsub topic describe orders --json
    """
    with state(ctx).client() as client:
        topic = client.describe_topic(name)
    emit(
        [_topic_json(topic, partitions=True)],
        as_json=as_json,
        render=lambda: _render_topic(topic),
    )


def _render_topic(topic: "TopicInfo") -> None:
    from pubsub.commands import _render

    _render.fields(
        [
            ("topic", topic.name),
            ("partitions", topic.partitions),
            ("created", iso_time(topic.created_ms)),
        ]
        + [
            (key, _human_config(key, value) + ("" if key in topic.overrides else "  (default)"))
            for key, value in topic.config.items()
        ],
        title=f"topic {topic.name}",
    )
    _render.table(
        ("partition", "log start", "next offset", "records", "size", "newest record"),
        [
            (
                p.partition,
                p.log_start_offset,
                p.next_offset,
                f"{p.records:,}",
                human_bytes(p.bytes),
                iso_time(p.max_timestamp),
            )
            for p in topic.partition_info
        ],
        numeric=(0, 1, 2, 3, 4),
    )


@app.command("alter")
def topic_alter(
    ctx: typer.Context,
    name: Annotated[
        str, typer.Argument(help="The topic.", autocompletion=complete_topic, callback=topic_names)
    ],
    partitions: Annotated[
        int | None,
        typer.Option("--partitions", "-P", help="Grow to this many partitions.", min=1),
    ] = None,
    retention: RetentionOption = None,
    retention_bytes: RetentionBytesOption = None,
    max_message_bytes: MaxMessageBytesOption = None,
    config: ConfigOption = None,
    delete_config: Annotated[
        list[str] | None,
        typer.Option(
            "--delete-config", help="Reset a config KEY to its default (repeatable).", metavar="KEY"
        ),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Add partitions or change a topic's configuration.

    Examples:

      pubsub topic alter orders --partitions 6
      pubsub topic alter orders --retention 3d --delete-config retention.bytes
    """
    values = _config_from_options(retention, retention_bytes, max_message_bytes, config)
    if partitions is None and not values and not delete_config:
        fail("nothing to change", "give --partitions, --retention, --config KEY=VALUE, …")
    with state(ctx).client() as client:
        topic = client.alter_topic(
            name, partitions=partitions, config=values, delete_config=delete_config or ()
        )
    emit(
        [_topic_json(topic, partitions=True)],
        as_json=as_json,
        render=lambda: note(f"topic {topic.name}: altered"),
        json_when_piped=False,
    )


@app.command("delete")
def topic_delete(
    ctx: typer.Context,
    name: Annotated[
        str, typer.Argument(help="The topic.", autocompletion=complete_topic, callback=topic_names)
    ],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    if_exists: Annotated[
        bool, typer.Option("--if-exists", help="Succeed if the topic does not exist.")
    ] = False,
) -> None:
    """Delete a topic, its records and the group offsets on it.

    Asks for confirmation on a terminal; in a script, --yes is required.

    Examples:

      pubsub topic delete scratch --yes
    """
    with state(ctx).client() as client:
        try:
            topic = client.describe_topic(name)
        except TopicNotFoundError:
            if if_exists:
                return
            raise
        if not yes:
            if not sys.stdin.isatty():
                fail(
                    f"refusing to delete topic {name!r} without confirmation",
                    "pass --yes to delete it from a script",
                )
            if not typer.confirm(
                f"Delete topic {name} and its {topic.records:,} records?", err=True
            ):
                fail("not deleted", code=1)
        client.delete_topic(name)
    note(f"topic {name}: deleted")


def _truncate_point(spec: str | None, now_ms: int) -> tuple[int | None, int | None]:
    """``--before``: (offset, None), (None, time in ms), or (None, None) for everything."""
    if spec is None:
        return None, None
    raw = spec.strip()
    if raw.startswith("@"):
        from pubsub import config

        return None, config.parse_time_spec(raw, now_ms)
    if raw.isdigit() and len(raw) <= 19 and int(raw) <= 2**63 - 1:
        return int(raw), None
    fail(
        f"invalid --before {spec[:60]!r}",
        "use an offset N (delete offsets below N), @TIME (ISO-8601 or epoch ms) or "
        "@-DURATION before now (@-1h, @-30m, @-3m30s)",
    )


@app.command("truncate")
def topic_truncate(
    ctx: typer.Context,
    name: Annotated[
        str, typer.Argument(help="The topic.", autocompletion=complete_topic, callback=topic_names)
    ],
    partition: Annotated[
        list[int] | None,
        typer.Option(
            "-p", "--partition", min=0, help="Only this partition (repeatable). Default: all."
        ),
    ] = None,
    before: Annotated[
        str | None,
        typer.Option(
            "--before",
            help="Delete only what comes before: offset N in each partition, the first record "
            "at or after @TIME (ISO-8601, local time unless it names a zone, or epoch ms), or "
            "@-DURATION before now (@-1h, @-30m). Default: everything.",
            metavar="N|@TIME|@-DURATION",
        ),
    ] = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Delete a topic's oldest records (all of them by default); offsets keep counting.

    The log start offset moves forward and the next offset stays, as with retention (Kafka's
    delete-records, nats' stream purge). An offset beyond a partition's end is refused
    (exit 3) and nothing is deleted. Group offsets are left as they are: a group below the
    new log start resumes there, with a warning. Works on a full disk, using the space
    reserve as retention does. Asks for confirmation on a terminal; in a script, --yes is
    required. A summary goes to stderr; --json prints the result on stdout.

    Examples:

      pubsub topic truncate scratch --yes
      pubsub topic truncate logs --before @-7d --yes
      pubsub topic truncate orders -p 0 -p 2 --before 1200 --yes --json
    """
    with state(ctx).client() as client:
        offset, moment = _truncate_point(before, client.now())
        topic = client.describe_topic(name)
        chosen = sorted(set(partition)) if partition else None
        if not yes:
            where = "" if chosen is None else f" in partition(s) {', '.join(map(str, chosen))}"
            if offset is not None:
                what = f"the records below offset {offset}"
            elif moment is not None:
                what = f"the records before {iso_time(moment)}"
            else:
                parts = topic.partition_info
                count = sum(p.records for p in parts if chosen is None or p.partition in chosen)
                what = f"all {count:,} record{'' if count == 1 else 's'}"
            if not sys.stdin.isatty():
                fail(
                    f"refusing to delete {what} of topic {name!r} without confirmation",
                    "pass --yes to truncate it from a script",
                )
            if not typer.confirm(f"Delete {what} of topic {name}{where}?", err=True):
                fail("not truncated", code=1)
        reports = client.truncate(name, chosen, before=offset, before_time=moment)
    records = sum(r.deleted_records for r in reports)
    size = sum(r.deleted_bytes for r in reports)
    emit(
        [
            {
                "topic": name,
                "deleted_records": records,
                "deleted_bytes": size,
                "partitions": [
                    {
                        "partition": r.partition,
                        "deleted_records": r.deleted_records,
                        "deleted_bytes": r.deleted_bytes,
                        "log_start_offset": r.log_start_offset,
                    }
                    for r in reports
                ],
            }
        ],
        as_json=as_json,
        json_when_piped=False,
    )
    starts = ", ".join(f"{r.partition}: {r.log_start_offset}" for r in reports)
    touched = sum(1 for r in reports if r.deleted_records)
    note(
        f"topic {name}: deleted {records:,} record{'' if records == 1 else 's'} "
        f"({human_bytes(size)}) from {touched} of {len(reports)} partition(s); "
        f"log start {starts}"
    )
