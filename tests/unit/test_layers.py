"""The module graph of ``pubsub`` is a DAG with documented ranks, checked on the source.

Every import counts: module-level, inside functions, and under ``TYPE_CHECKING``. A module
may import only modules of its own rank or a lower one (see docs/architecture.md for what
each rank holds), and the whole graph has no cycle. Further rules: storage imports only the
standard library and :mod:`pubsub.errors`; the CLI never imports storage; no module uses
another module's private names; the Kafka libraries stay in :mod:`pubsub.kafka`; rich stays
in the CLI's renderer.
"""

import ast
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "pubsub"

#: Ranks, lowest first. A module imports only modules of its own rank or below.
RANKS: list[tuple[str, tuple[str, ...]]] = [
    (
        "foundation",
        (
            "pubsub.version",
            "pubsub.errors",
            "pubsub.limits",
            "pubsub.words",
            "pubsub.records",
            "pubsub.models",
            "pubsub.partitioner",
            "pubsub.config",
            "pubsub.names",
            "pubsub.envelope",
            "pubsub.backend",
            "pubsub.kafka",
            "pubsub.kafka.url",
            "pubsub.kafka.wire*",
        ),
    ),
    ("storage", ("pubsub.db*",)),
    (
        "services",
        (
            "pubsub.assignor",
            "pubsub.space",
            "pubsub.topics",
            "pubsub.writer",
            "pubsub.reader",
            "pubsub.offsets",
            "pubsub.membership",
            "pubsub.group_admin",
            "pubsub.retention",
            "pubsub.maintenance",
            "pubsub.stats",
            "pubsub.metrics",
            "pubsub.shares",
        ),
    ),
    ("assembly", ("pubsub.services",)),
    ("consumer", ("pubsub.consumer", "pubsub.share_consumer")),
    ("facade", ("pubsub.broker",)),
    (
        "clients",
        (
            "pubsub.aio",
            "pubsub.aio_share",
            "pubsub.client",
            "pubsub.bench",
            "pubsub.kafka.*",
            "pubsub.serve*",
            "pubsub.mirror*",
        ),
    ),
    ("cli", ("pubsub.commands*",)),
    ("package", ("pubsub", "pubsub.__main__")),
]

#: Third-party libraries of the Kafka parts, allowed only under pubsub/kafka.
KAFKA_LIBRARIES = {"kafka", "cramjam", "google_crc32c", "confluent_kafka", "aiokafka"}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def rank_of(module: str) -> int:
    """The rank of ``module``; the most specific pattern wins (``pubsub.kafka.url`` before
    ``pubsub.kafka.*``)."""
    best: tuple[int, int] | None = None  # (specificity, rank)
    for rank, (_, patterns) in enumerate(RANKS):
        for pattern in patterns:
            if pattern.endswith("*"):
                prefix = pattern[:-1]
                matches = module.startswith(prefix) or module == prefix.rstrip(".")
                specificity = len(prefix)
            else:
                matches = module == pattern
                specificity = len(pattern) + 1000
            if matches and (best is None or specificity > best[0]):
                best = (specificity, rank)
    if best is None:
        raise AssertionError(f"{module} has no rank: add it to RANKS and docs/architecture.md")
    return best[1]


class Import:
    """One import statement's target, where it is and what it names."""

    def __init__(self, target: str, names: tuple[str, ...], line: int) -> None:
        self.target = target
        self.names = names
        self.line = line


def imports_of(module: str, source: str | None = None) -> list[Import]:
    """Every import of ``module`` (all of them: module level, functions, TYPE_CHECKING)."""
    path = MODULES.get(module)
    text = source if source is not None else path.read_text() if path else ""
    tree = ast.parse(text)
    package = module
    is_package = path is not None and path.name == "__init__.py"
    found: list[Import] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend(Import(alias.name, (), node.lineno) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                if not is_package:
                    parts = parts[:-1]
                parts = parts[: len(parts) - (node.level - 1)]
                base = ".".join([*parts, *([node.module] if node.module else [])])
            found.append(Import(base, tuple(alias.name for alias in node.names), node.lineno))
    return found


def edges_of(module: str, source: str | None = None) -> set[str]:
    """The pubsub modules ``module`` imports (``from pkg import sub`` is an edge to ``sub``,
    not to the package, when every name is a submodule)."""
    out: set[str] = set()
    for imp in imports_of(module, source):
        submodules = [f"{imp.target}.{n}" for n in imp.names if f"{imp.target}.{n}" in MODULES]
        out.update(submodules)
        if imp.target in MODULES and len(submodules) < len(imp.names or ("",)):
            out.add(imp.target)
    out.discard(module)
    return out


GRAPH = {module: edges_of(module) for module in MODULES}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A cycle of ``graph`` as a list of nodes (first == last), or None."""
    state: dict[str, int] = {}  # 1: on the stack, 2: done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state:
                cycle = visit(nxt)
                if cycle:
                    return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


# -- the graph -----------------------------------------------------------------------------


def test_every_module_has_a_rank() -> None:
    for module in MODULES:
        rank_of(module)


def test_the_module_graph_has_no_cycle() -> None:
    assert find_cycle(GRAPH) is None, " -> ".join(find_cycle(GRAPH) or [])


def test_imports_go_to_the_same_rank_or_lower() -> None:
    wrong = [
        f"{module} ({RANKS[rank_of(module)][0]}) imports {target} ({RANKS[rank_of(target)][0]})"
        for module, targets in GRAPH.items()
        for target in targets
        if rank_of(target) > rank_of(module)
    ]
    assert not wrong, "\n".join(wrong)


def test_the_checks_can_fail() -> None:
    """The cycle finder and the edge reader see what they must (function-level and
    TYPE_CHECKING imports included)."""
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
    source = (
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n"
        "    from pubsub.broker import Broker\n"
        "def f():\n"
        "    from pubsub import consumer\n"
    )
    edges = edges_of("pubsub.topics", source)
    assert edges == {"pubsub.broker", "pubsub.consumer"}
    assert rank_of("pubsub.broker") > rank_of("pubsub.topics")


# -- particular rules ----------------------------------------------------------------------


def modules_under(prefix: str) -> list[str]:
    return [m for m in MODULES if m == prefix or m.startswith(prefix + ".")]


@pytest.mark.parametrize("module", modules_under("pubsub.db"))
def test_storage_imports_only_stdlib_sqlite_utils_errors_and_itself(module: str) -> None:
    for imp in imports_of(module):
        top = imp.target.split(".")[0]
        if top == "pubsub":
            assert imp.target.startswith("pubsub.db") or imp.target == "pubsub.errors", (
                f"{module}: {imp.target}"
            )
        else:  # sqlite-utils: the schema introspection of admin commands, off the hot path
            assert top in sys.stdlib_module_names or top == "sqlite_utils", (
                f"{module}: {imp.target}"
            )


@pytest.mark.parametrize("module", modules_under("pubsub.commands"))
def test_the_cli_never_imports_storage(module: str) -> None:
    for imp in imports_of(module):
        assert not imp.target.startswith("pubsub.db"), f"{module}:{imp.line}: {imp.target}"
        assert not (imp.target == "pubsub" and "db" in imp.names), f"{module}:{imp.line}"


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_module_uses_another_modules_private_names(module: str) -> None:
    path = MODULES[module]
    tree = ast.parse(path.read_text())
    imported_modules: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            for alias in node.names:
                name = alias.name
                # A package's private modules are for that package's own modules.
                sibling = f"{node.module}.{name}" in MODULES and module.startswith(
                    f"{node.module}."
                )
                assert sibling or not (name.startswith("_") and not name.startswith("__")), (
                    f"{module}:{node.lineno} imports private {node.module}.{name}"
                )
                if f"{node.module}.{name}" in MODULES:
                    imported_modules.add(alias.asname or name)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name in MODULES:
                    imported_modules.add(alias.asname or alias.name.split(".")[0])
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in imported_modules
            and node.attr.startswith("_")
            and not node.attr.startswith("__")
        ):
            raise AssertionError(f"{module}:{node.lineno} uses {node.value.id}.{node.attr}")


#: Public methods of named tuples despite the underscore.
NAMED_TUPLE_API = {"_asdict", "_replace", "_make", "_fields"}


@pytest.mark.parametrize("module", modules_under("pubsub.commands"))
def test_commands_touch_no_private_state_of_api_objects(module: str) -> None:
    """The CLI uses the API as any program would: no ``obj._name`` but on its own self."""
    tree = ast.parse(MODULES[module].read_text())
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and node.attr.startswith("_")
            and not node.attr.startswith("__")
            and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"))
            and node.attr not in NAMED_TUPLE_API
        ):
            raise AssertionError(f"{module}:{node.lineno}: .{node.attr}")


def all_imports() -> Iterator[tuple[str, Import]]:
    for module in MODULES:
        for imp in imports_of(module):
            yield module, imp


def test_the_kafka_libraries_stay_in_pubsub_kafka() -> None:
    for module, imp in all_imports():
        if module.startswith("pubsub.kafka"):
            continue
        assert imp.target.split(".")[0] not in KAFKA_LIBRARIES, f"{module}: {imp.target}"


def test_only_the_client_registry_and_the_cli_import_pubsub_kafka() -> None:
    allowed = (
        "pubsub.client",
        "pubsub.commands",
        "pubsub.kafka",
        "pubsub.serve",
        "pubsub.mirror",  # lazily, for a kafka:// end only
    )
    for module, imp in all_imports():
        if imp.target.startswith("pubsub.kafka"):
            assert module.startswith(allowed), f"{module}: {imp.target}"


def test_the_file_path_of_kafka_url_parsing_imports_no_kafka_library() -> None:
    assert "pubsub.kafka.url" in MODULES  # a rename must not turn this check off
    for imp in imports_of("pubsub.kafka.url"):
        assert imp.target.split(".")[0] not in KAFKA_LIBRARIES, imp.target


WIRE_THIRD_PARTY = {"kafka", "cramjam", "google_crc32c"}


@pytest.mark.parametrize("module", modules_under("pubsub.kafka.wire"))
def test_the_wire_codec_imports_only_itself_and_its_libraries(module: str) -> None:
    for imp in imports_of(module):
        top = imp.target.split(".")[0]
        if top == "pubsub":
            assert imp.target.startswith("pubsub.kafka.wire"), f"{module}: {imp.target}"
        else:
            assert top in sys.stdlib_module_names or top in WIRE_THIRD_PARTY, (
                f"{module}: {imp.target}"
            )


@pytest.mark.parametrize("module", sorted(MODULES))
def test_the_api_never_imports_the_cli_libraries(module: str) -> None:
    for imp in imports_of(module):
        top = imp.target.split(".")[0]
        assert top != "click", f"{module}: {imp.target}"
        if not module.startswith(("pubsub.commands", "pubsub.db")):
            assert top not in ("typer", "rich", "sqlite_utils"), f"{module}: {imp.target}"
        elif module.startswith("pubsub.db"):
            assert top not in ("typer", "rich"), f"{module}: {imp.target}"
        elif module != "pubsub.commands._render":
            assert top != "rich", f"{module}: rich belongs in pubsub.commands._render"


def test_writes_never_use_a_deferred_begin() -> None:
    for module, path in MODULES.items():
        text = path.read_text()
        if module == "pubsub.bench":
            continue  # the raw-sqlite3 baselines of pubsub bench, not pubsub's storage
        if module == "pubsub.db.transaction":
            # The one deferred BEGIN is ReadTransaction's, which never writes.
            assert text.count('execute("BEGIN DEFERRED")') == 1
            assert 'execute("BEGIN")' not in text
            continue
        assert 'execute("BEGIN")' not in text and "BEGIN DEFERRED" not in text, module
        assert '"BEGIN IMMEDIATE"' not in text, f"{module}: transactions live in transaction.py"


@pytest.mark.parametrize(
    "argv",
    [["produce", "t", "v"], ["consume", "t"]],
    ids=lambda a: a[0],
)
def test_hot_path_does_not_import_rich_or_sqlite_utils(tmp_path: Path, argv: list[str]) -> None:
    db = tmp_path / "x.db"
    code = (
        "import sys\n"
        "from pubsub.commands.app import main\n"
        "from pubsub import Broker\n"
        f"Broker({str(db)!r}).create_topic('t').__class__\n"
        "heavy = ('rich', 'sqlite_utils', 'pydantic', 'kafka', 'cramjam', 'google_crc32c',\n"
        "         'confluent_kafka')\n"
        "for name in list(sys.modules):\n"
        "    if name.split('.')[0] in heavy:\n"
        "        raise SystemExit('imported before the command: ' + name)\n"
        f"sys.argv = ['pubsub', '--db', {str(db)!r}, *{argv!r}]\n"
        "try:\n"
        "    main()\n"
        "except SystemExit as exit:\n"
        "    assert not exit.code, exit.code\n"
        "bad = sorted(n for n in sys.modules if n.split('.')[0] in heavy)\n"
        "print(','.join(bad))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1:] in ([""], []), result.stdout
