"""``pubsub group``: list, describe, reset offsets, delete (kafka-consumer-groups' vocabulary)."""

from typing import TYPE_CHECKING, Annotated, Any

import typer

from pubsub.commands._common import (
    JsonOption,
    complete_group,
    fail,
    group_names,
    iso_time,
    note,
    state,
    topic_names,
)
from pubsub.commands._output import emit
from pubsub.words import counted

if TYPE_CHECKING:
    from pubsub.backend import LogClient
    from pubsub.broker import Broker
    from pubsub.models import GroupInfo, OffsetChange

app = typer.Typer(
    help="Inspect consumer groups, reset their offsets, delete them.",
    no_args_is_help=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _group_json(group: "GroupInfo", *, detail: bool) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": group.name,
        "state": group.state,
        "generation": group.generation,
        "members": group.live_members,
        "topics": list(group.topics),
        "lag": group.lag,
    }
    if detail:
        data["partitions"] = [p._asdict() for p in group.partitions]
        data["members"] = [
            {
                **m._asdict(),
                "topics": list(m.topics),
                "partitions": [list(tp) for tp in m.partitions],
            }
            for m in group.members
        ]
        data["live_members"] = group.live_members
    return data


@app.command("list")
def group_list(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """List groups: state, live members, topics and total lag.

    Examples:

      pubsub group list
      pubsub group list --json | jq 'select(.lag > 1000)'
    """
    from pubsub.commands import _share_admin

    with state(ctx).client() as client:
        groups = client.list_groups()
        files = _file_broker(client)
        shares = files.list_share_groups() if files is not None else []
        share_rows = _share_admin.list_rows(files) if files is not None else []
    emit(
        # A consumer group's object is unchanged; a share group's says "type": "share".
        [_group_json(g, detail=False) for g in groups]
        + [_share_admin.share_json(g, detail=False) for g in shares],
        as_json=as_json,
        render=lambda: _render_groups(groups, share_rows),
    )


def _file_broker(client: "LogClient") -> "Broker | None":
    """The client as a Broker when it is a database file (share groups live only there)."""
    from pubsub.broker import Broker

    return client if isinstance(client, Broker) else None


def _render_groups(groups: "list[GroupInfo]", share_rows: "list[tuple[object, ...]]") -> None:
    from pubsub.commands import _render

    rows: list[tuple[object, ...]] = [
        (g.name, "consumer", g.state, g.live_members, ", ".join(g.topics), f"{g.lag:,}")
        for g in groups
    ]
    _render.table(
        ("group", "type", "state", "members", "topics", "lag"),
        sorted(rows + share_rows, key=lambda row: str(row[0])),
        numeric=(3, 5),
    )


@app.command("describe")
def group_describe(
    ctx: typer.Context,
    name: Annotated[
        str | None,
        typer.Argument(
            help="The group (or --all).", autocompletion=complete_group, callback=group_names
        ),
    ] = None,
    all_groups: Annotated[
        bool, typer.Option("--all", help="Every group, one after the other (by name).")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Show a group's partitions (committed offset, log end, lag, owner) and its members.

    With --all, every group: one object per group (JSON Lines) when piped, one section per
    group on a terminal; no groups, no output (exit 0).

    Examples:

      pubsub group describe billing
      pubsub group describe billing --json
      pubsub group describe --all | jq -c 'select(.lag > 0) | .name'
    """
    if (name is None) == (not all_groups):
        fail(
            "give a group NAME or --all, not both" if all_groups else "give a group NAME or --all",
            "list the groups with 'pubsub group list'",
        )
    with state(ctx).client() as client:
        files = _file_broker(client)
        if (
            files is not None
            and not all_groups
            and str(name) in {g.name for g in files.list_share_groups()}
        ):
            from pubsub.commands import _share_admin

            _share_admin.describe(files, str(name), as_json)
            return
        groups = client.list_groups() if all_groups else [client.describe_group(str(name))]
    emit(
        (_group_json(group, detail=True) for group in groups),
        as_json=as_json,
        render=lambda: _render_described(groups),
    )


def _render_described(groups: "list[GroupInfo]") -> None:
    """Groups on a terminal, one section each (a blank line between)."""
    for index, group in enumerate(groups):
        if index:
            print(flush=True)
        _render_group(group)
    if not groups:
        note("no groups")


def _render_group(group: "GroupInfo") -> None:
    """A group on a terminal: its partitions, then its members (or "no members")."""
    from pubsub.commands import _render

    _render.table(
        ("topic", "partition", "committed", "log end", "lag", "owner"),
        [
            (
                p.topic,
                p.partition,
                "-" if p.committed_offset is None else p.committed_offset,
                p.log_end_offset,
                "-" if p.lag is None else f"{p.lag:,}",
                p.owner or "-",
            )
            for p in group.partitions
        ],
        title=f"group {group.name}: {group.state}, generation {group.generation}",
        numeric=(1, 2, 3, 4),
    )
    if not group.members:
        print("no members", flush=True)
        return
    _render.table(
        ("member", "host", "pid", "program", "joined", "last heartbeat", "lease", "partitions"),
        [
            (
                m.member_id,
                m.host,
                m.pid,
                m.program,
                iso_time(m.joined_ms),
                iso_time(m.heartbeat_ms),
                "expired" if not m.live else f"{(m.lease_remaining_ms or 0) / 1000:.1f} s",
                ", ".join(f"{tp.topic}[{tp.partition}]" for tp in m.partitions) or "-",
            )
            for m in group.members
        ],
        title="members",
        numeric=(2,),
    )


def _parse_topics(specs: list[str]) -> dict[str, list[int] | None]:
    topics: dict[str, list[int] | None] = {}
    for spec in specs:
        name, sep, rest = spec.partition(":")
        if not sep:
            topics[name] = None
            continue
        try:
            partitions = [int(p) for p in rest.split(",") if p.strip()]
        except ValueError:
            fail(f"invalid --topic {spec!r}", "use TOPIC or TOPIC:P,P,… with partition numbers")
        if not partitions:
            fail(f"invalid --topic {spec!r}", "list partitions after the colon: TOPIC:0,2")
        existing = topics.get(name, [])
        topics[name] = None if existing is None else sorted(set(existing + partitions))
    return topics


@app.command("reset-offsets")
def group_reset_offsets(
    ctx: typer.Context,
    name: Annotated[
        str, typer.Argument(help="The group.", autocompletion=complete_group, callback=group_names)
    ],
    topic: Annotated[
        list[str] | None,
        typer.Option(
            "--topic",
            "-t",
            help="TOPIC or TOPIC:P,P… (repeatable).",
            metavar="TOPIC[:P,P…]",
        ),
    ] = None,
    all_topics: Annotated[
        bool, typer.Option("--all-topics", help="Every topic the group has offsets for.")
    ] = False,
    to_earliest: Annotated[bool, typer.Option("--to-earliest", help="To the log start.")] = False,
    to_latest: Annotated[bool, typer.Option("--to-latest", help="To the log end.")] = False,
    to_offset: Annotated[
        int | None, typer.Option("--to-offset", help="To this offset.", metavar="N")
    ] = None,
    shift_by: Annotated[
        int | None,
        typer.Option("--shift-by", help="Move by N (negative: back).", metavar="±N"),
    ] = None,
    to_datetime: Annotated[
        str | None,
        typer.Option(
            "--to-datetime",
            help="To the first record at or after this time (ISO-8601 or epoch ms).",
            metavar="ISO",
        ),
    ] = None,
    by_duration: Annotated[
        str | None,
        typer.Option(
            "--by-duration",
            help="To the first record of the last DURATION (e.g. 1h).",
            metavar="DURATION",
        ),
    ] = None,
    to_current: Annotated[
        bool,
        typer.Option(
            "--to-current", help="To the current committed offset (fills in missing ones)."
        ),
    ] = False,
    execute: Annotated[
        bool, typer.Option("--execute", help="Apply the plan (without it: a dry run).")
    ] = False,
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run", help="Only print the plan (the default; as kafka-consumer-groups)."
        ),
    ] = False,
    force: Annotated[
        bool, typer.Option("--force", help="Apply even though the group has live members.")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Reset a group's committed offsets; prints the plan, applies it with --execute.

    Exactly one of --to-earliest, --to-latest, --to-offset, --shift-by, --to-datetime,
    --by-duration, --to-current. New offsets are clamped to what the log holds. Without
    --execute nothing changes (--dry-run says so explicitly).

    Examples:

      pubsub group reset-offsets billing --topic orders --to-earliest
      pubsub group reset-offsets billing --topic orders:0,2 --to-offset 100 --dry-run
      pubsub group reset-offsets billing --all-topics --by-duration 1h --execute
    """
    from pubsub import config
    from pubsub.commands.consume import parse_time

    if dry_run and execute:
        fail("--dry-run and --execute contradict each other", "give one of them")
    with state(ctx).client() as client:
        broker = _file_broker(client)
        if broker is not None and name in {g.name for g in broker.list_share_groups()}:
            from pubsub.commands import _share_admin

            _share_admin.reset(
                broker,
                name,
                [spec.split(":")[0] for spec in topic or []] or None,
                to_earliest=to_earliest,
                to_latest=to_latest,
                to_offset=to_offset,
                shift_by=shift_by,
                execute=execute,
                as_json=as_json,
            )
            return
    chosen: list[tuple[str, int | None]] = []
    if to_earliest:
        chosen.append(("to-earliest", None))
    if to_latest:
        chosen.append(("to-latest", None))
    if to_offset is not None:
        chosen.append(("to-offset", to_offset))
    if shift_by is not None:
        chosen.append(("shift-by", shift_by))
    if to_datetime is not None:
        chosen.append(("to-datetime", parse_time(to_datetime)))
    if by_duration is not None:
        chosen.append(("by-duration", config.parse_duration(by_duration)))
    if to_current:
        chosen.append(("to-current", None))
    if len(chosen) != 1:
        fail(
            "give exactly one reset strategy",
            "--to-earliest, --to-latest, --to-offset N, --shift-by N, --to-datetime ISO, "
            "--by-duration DURATION or --to-current",
        )
    if bool(topic) == all_topics:
        fail("give --topic TOPIC[:P,P…] (repeatable) or --all-topics")
    if to_offset is not None and to_offset < 0:
        fail(f"invalid offset {to_offset}", "an offset is 0 or more")
    strategy, value = chosen[0]
    with state(ctx).client() as client:
        plan = client.plan_offset_reset(
            name,
            strategy,  # type: ignore[arg-type]
            topics=None if all_topics else _parse_topics(topic or []),
            value=value,
        )
        if execute:
            client.reset_offsets(name, plan, force=force)
    emit((change._asdict() for change in plan), as_json=as_json, render=lambda: _render_plan(plan))
    if execute:
        note(f"group {name}: {counted(len(plan), 'offset')} reset")
    else:
        note("dry run: nothing changed; add --execute to apply")


def _render_plan(plan: "list[OffsetChange]") -> None:
    from pubsub.commands import _render

    _render.table(
        ("topic", "partition", "current", "new"),
        [
            (
                c.topic,
                c.partition,
                "-" if c.current_offset is None else c.current_offset,
                c.new_offset,
            )
            for c in plan
        ],
        numeric=(1, 2, 3),
    )


@app.command("delete")
def group_delete(
    ctx: typer.Context,
    name: Annotated[
        str, typer.Argument(help="The group.", autocompletion=complete_group, callback=group_names)
    ],
) -> None:
    """Delete a group and all its committed offsets (refused while it has live members).

    Examples:

      pubsub group delete old-reports
    """
    with state(ctx).client() as client:
        files = _file_broker(client)
        if files is not None and name in {g.name for g in files.list_share_groups()}:
            files.delete_share_group(name)
            note(f"share group {name}: deleted")
            return
        client.delete_group(name)
    note(f"group {name}: deleted")


@app.command("delete-offsets")
def group_delete_offsets(
    ctx: typer.Context,
    name: Annotated[
        str, typer.Argument(help="The group.", autocompletion=complete_group, callback=group_names)
    ],
    topic: Annotated[str, typer.Option("--topic", "-t", help="The topic.", callback=topic_names)],
) -> None:
    """Delete a group's committed offsets on one topic (refused while a live member reads it).

    Examples:

      pubsub group delete-offsets billing --topic orders
    """
    with state(ctx).client() as client:
        count = client.delete_group_offsets(name, topic)
    note(f"group {name}: deleted {counted(count, 'offset')} of topic {topic}")
