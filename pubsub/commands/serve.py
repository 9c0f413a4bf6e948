"""``pubsub serve``: speak the Kafka protocol over the database, for unmodified Kafka clients;
``pubsub serve users``: the users file of its SASL authentication."""

import ipaddress
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from pubsub.commands._common import fail, note, state, warn

DEFAULT_LISTEN = "127.0.0.1:9092"

app = typer.Typer(
    invoke_without_command=True,
    no_args_is_help=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
users_app = typer.Typer(
    help="Add, remove and list the users of --users FILE (SASL PLAIN and SCRAM).",
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.add_typer(users_app, name="users")


class ClientAuthChoice(StrEnum):
    """Kafka's ssl.client.auth."""

    required = "required"
    requested = "requested"
    none = "none"


class MechanismChoice(StrEnum):
    """The SASL mechanisms a user may log in with."""

    plain = "PLAIN"
    scram_sha_256 = "SCRAM-SHA-256"
    scram_sha_512 = "SCRAM-SHA-512"


UsersFileOption = Annotated[
    Path,
    typer.Option(
        "--users",
        metavar="FILE",
        help="The users file (created with mode 0600 by 'users add').",
    ),
]


def split_address(text: str, option: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT`` for IPv6) as (host, port); exit 2 when malformed."""
    host, sep, port_text = text.rpartition(":")
    if not sep or not host or not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        fail(f"{option} {text!r} is not HOST:PORT", "for example 127.0.0.1:9092")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, int(port_text)


def is_loopback(host: str) -> bool:
    """True for a loopback address (127.0.0.0/8, ::1) or the name localhost."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@app.callback()
def serve(
    ctx: typer.Context,
    listen: Annotated[
        str,
        typer.Option(
            "--listen",
            metavar="HOST:PORT",
            help="Where to listen (port 0 picks a free port); an address other than loopback "
            "needs --users, mutual TLS or --insecure.",
        ),
    ] = DEFAULT_LISTEN,
    advertise: Annotated[
        str | None,
        typer.Option(
            "--advertise",
            metavar="HOST:PORT",
            help="The address clients are told to connect to (default: the one listened on).",
        ),
    ] = None,
    max_request_bytes: Annotated[
        int,
        typer.Option(
            "--max-request-bytes",
            min=64,
            metavar="N",
            help="Close a connection that sends a larger request (Kafka's "
            "socket.request.max.bytes).",
        ),
    ] = 100 * 1024 * 1024,
    auto_create_topics: Annotated[
        bool,
        typer.Option(
            "--auto-create-topics",
            help="Create a topic (1 partition, the database defaults) when a client asks for "
            "its metadata, as Kafka's auto.create.topics.enable does.",
        ),
    ] = False,
    fetch_cache: Annotated[
        int,
        typer.Option(
            "--fetch-cache",
            min=0,
            metavar="BYTES",
            help="Keep up to this many bytes of encoded record batches in memory for fetches "
            "(recent produces, recent fetches and the range each consumer reads next); 0 "
            "turns the cache off.",
        ),
    ] = 32 * 1024 * 1024,
    users: Annotated[
        Path | None,
        typer.Option(
            "--users",
            metavar="FILE",
            help="Require SASL authentication (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512) by the "
            "users of FILE (see 'pubsub serve users add').",
        ),
    ] = None,
    tls_cert: Annotated[
        Path | None,
        typer.Option(
            "--tls-cert", metavar="FILE", help="Serve TLS with this PEM certificate (chain)."
        ),
    ] = None,
    tls_key: Annotated[
        Path | None,
        typer.Option(
            "--tls-key",
            metavar="FILE",
            help="The PEM private key of --tls-cert (mode 0600: not readable by others).",
        ),
    ] = None,
    tls_ca: Annotated[
        Path | None,
        typer.Option(
            "--tls-ca",
            metavar="FILE",
            help="PEM certificates of the CAs that sign client certificates (mutual TLS).",
        ),
    ] = None,
    tls_client_auth: Annotated[
        ClientAuthChoice | None,
        typer.Option(
            "--tls-client-auth",
            help="Kafka's ssl.client.auth: whether clients must show a certificate signed by "
            "--tls-ca (default: required with --tls-ca, none without).",
        ),
    ] = None,
    acl: Annotated[
        Path | None,
        typer.Option(
            "--acl",
            metavar="FILE",
            help="Allow each principal only what the rules of FILE allow (see docs/serve.md).",
        ),
    ] = None,
    insecure: Annotated[
        bool,
        typer.Option(
            "--insecure",
            help="Allow a non-loopback --listen without authentication: anyone who can reach "
            "it can read and write every topic.",
        ),
    ] = False,
    connections_max_idle_ms: Annotated[
        int,
        typer.Option(
            "--connections-max-idle-ms",
            min=100,
            metavar="MS",
            help="Close a connection that sends nothing for this long (Kafka's "
            "connections.max.idle.ms).",
        ),
    ] = 600_000,
) -> None:
    """Serve the Kafka wire protocol over the database, so Kafka clients can use it.

    Producers, consumers, consumer groups and admin clients of Kafka connect to it as to a
    one-broker cluster; other processes keep using the same file at the same time. It listens
    on loopback by default; another address needs --users (SASL), better with TLS
    (--tls-cert, --tls-key), or --insecure. Stop it with Ctrl-C or SIGTERM.

    Examples:

      pubsub serve
      pubsub serve --listen 127.0.0.1:19092 --auto-create-topics
      pubsub serve users add alice --users users.json
      pubsub serve --listen 0.0.0.0:9093 --users users.json --tls-cert cert.pem --tls-key key.pem
      kcat -b 127.0.0.1:9092 -t orders -C
    """
    if ctx.invoked_subcommand is not None:
        return
    host, port = split_address(listen, "--listen")
    if (tls_cert is None) != (tls_key is None):
        fail("--tls-cert and --tls-key go together", "give both, or neither for no TLS")
    if tls_cert is None and (tls_ca is not None or tls_client_auth is not None):
        fail("--tls-ca and --tls-client-auth need TLS", "add --tls-cert FILE --tls-key FILE")
    client_auth = tls_client_auth.value if tls_client_auth is not None else None
    if client_auth is None:
        client_auth = "required" if tls_ca is not None else "none"
    if client_auth != "none" and tls_ca is None:
        fail(
            f"--tls-client-auth {client_auth} needs --tls-ca FILE",
            "give the CA certificates that sign your clients' certificates",
        )
    from pubsub.serve.main import load_security

    security = load_security(
        users=users,
        tls_cert=tls_cert,
        tls_key=tls_key,
        tls_ca=tls_ca,
        client_auth="required"
        if client_auth == "required"
        else ("requested" if client_auth == "requested" else "none"),
        acl=acl,
    )
    if not is_loopback(host):
        if not security.authenticates and not insecure:
            fail(
                f"--listen {listen}: a non-loopback address needs authentication",
                "add --users FILE (SASL, with --tls-cert/--tls-key for TLS) or mutual TLS "
                "(--tls-ca FILE); --insecure serves anyone who can reach the address",
            )
        if not security.authenticates:
            warn(f"--insecure: anyone who can reach {listen} can read and write every topic")
        elif security.tls is None:
            warn(
                f"{listen} is not loopback and has no TLS: SASL/PLAIN passwords and all "
                "records cross the network readable (add --tls-cert and --tls-key)"
            )
    advertised = split_address(advertise, "--advertise") if advertise is not None else None
    if host == "localhost":
        host = "127.0.0.1"  # librdkafka may resolve localhost to ::1: listen on an address
    settings = state(ctx)
    from pubsub.serve.main import run

    run(
        settings.db,
        host=host,
        port=port,
        advertise=advertised,
        sync="normal" if settings.sync == "normal" else "full",
        busy_timeout=settings.busy_timeout,
        max_request_bytes=max_request_bytes,
        auto_create_topics=auto_create_topics,
        fetch_cache_bytes=fetch_cache,
        on_listening=lambda address: note(
            f"pubsub serve: listening on {address} ({security.protocol})"
        ),
        security=security,
        idle_timeout=connections_max_idle_ms / 1000,
    )


def _read_password(name: str) -> str:
    """The password from a prompt (twice) on a terminal, else the first line of stdin."""
    if sys.stdin.isatty():
        import getpass

        password = getpass.getpass(f"Password for {name}: ")
        if getpass.getpass("Again: ") != password:
            fail("the two passwords differ", "run the command again")
    else:
        line = sys.stdin.readline()
        password = line[:-1] if line.endswith("\n") else line
        password = password[:-1] if password.endswith("\r") else password
    if not password:
        fail("an empty password", "type one at the prompt, or give it on stdin")
    return password


@users_app.command("add")
def users_add(
    name: Annotated[str, typer.Argument(help="The user name clients log in with.")],
    users: UsersFileOption,
    mechanism: Annotated[
        list[MechanismChoice] | None,
        typer.Option(
            "--mechanism",
            case_sensitive=False,
            help="A mechanism the user may log in with (repeat; default: all three).",
        ),
    ] = None,
) -> None:
    """Add a user (or set a user's password) in the users file.

    The password is read from a prompt, or from the first line of stdin when it is not a
    terminal, never from the command line. The file keeps salted hashes only.

    Examples:

      pubsub serve users add alice --users users.json
      printf '%s\\n' "$PASSWORD" | pubsub serve users add etl --users users.json
    """
    from pubsub.serve import users as store

    if not store.valid_user_name(name):
        fail(f"{name[:64]!r} is not a valid user name", "1-255 printable characters, no blanks")
    known = store.load_users(users) if users.exists() else {}
    password = _read_password(name)
    chosen = [m.value for m in mechanism] if mechanism else list(store.MECHANISMS)
    known[name] = store.credentials_for(password, dict.fromkeys(chosen))
    store.save_users(users, known)
    note(f"{name}: {', '.join(sorted(known[name]))} in {users}")


@users_app.command("remove")
def users_remove(
    name: Annotated[str, typer.Argument(help="The user to remove.")],
    users: UsersFileOption,
) -> None:
    """Remove a user from the users file (a running server keeps its list until restarted).

    Examples:

      pubsub serve users remove alice --users users.json
    """
    from pubsub.serve import users as store

    known = store.load_users(users)
    if name not in known:
        fail(
            f"no user {name[:64]!r} in {users}",
            f"see 'pubsub serve users list --users {users}'",
            code=3,
        )
    del known[name]
    store.save_users(users, known)
    note(f"removed {name} from {users}")


@users_app.command("list")
def users_list(users: UsersFileOption) -> None:
    """List the users: a name and its mechanisms per line (tab-separated).

    Examples:

      pubsub serve users list --users users.json
    """
    from pubsub.serve import users as store

    for name, entries in sorted(store.load_users(users).items()):
        sys.stdout.write(f"{name}\t{','.join(sorted(entries))}\n")
