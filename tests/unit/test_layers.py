"""Imports go one way: commands -> pubsub (API) -> pubsub.db, checked on the source."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "pubsub"


def imports_of(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def modules(subdir: str = "") -> list[Path]:
    return sorted((PACKAGE / subdir).glob("*.py"))


@pytest.mark.parametrize("path", modules("db"), ids=lambda p: p.name)
def test_storage_imports_only_stdlib_errors_and_itself(path: Path) -> None:
    for name in imports_of(path):
        top = name.split(".")[0]
        if top == "pubsub":
            assert name.startswith("pubsub.db") or name == "pubsub.errors", f"{path.name}: {name}"
        assert top not in ("typer", "rich", "click"), f"{path.name}: {name}"


@pytest.mark.parametrize("path", modules(), ids=lambda p: p.name)
def test_api_never_imports_the_cli(path: Path) -> None:
    for name in imports_of(path):
        assert name.split(".")[0] not in ("typer", "rich", "click", "sqlite_utils"), name
        assert not name.startswith("pubsub.commands") or path.name == "__main__.py", name


@pytest.mark.parametrize(
    "path", [*modules(), *modules("db"), *modules("commands")], ids=lambda p: p.name
)
def test_nobody_imports_click(path: Path) -> None:
    assert not any(n.split(".")[0] == "click" for n in imports_of(path))


@pytest.mark.parametrize("path", modules("commands"), ids=lambda p: p.name)
def test_rich_is_confined_to_the_renderer(path: Path) -> None:
    if path.name != "_render.py":
        assert not any(n.split(".")[0] == "rich" for n in imports_of(path)), path.name


WIRE_THIRD_PARTY = {"kafka", "cramjam", "google_crc32c"}


@pytest.mark.parametrize("path", modules("kafka/wire"), ids=lambda p: p.name)
def test_the_wire_codec_imports_only_itself_and_its_libraries(path: Path) -> None:
    for name in imports_of(path):
        top = name.split(".")[0]
        if top == "pubsub":
            assert name.startswith("pubsub.kafka.wire"), f"{path.name}: {name}"
        else:
            assert top in sys.stdlib_module_names or top in WIRE_THIRD_PARTY, f"{path.name}: {name}"


#: The one module outside pubsub.kafka that may import it: the dispatcher of ``kafka://``
#: targets, which does so inside the function that opens one.
KAFKA_DISPATCHER = PACKAGE / "client.py"
KAFKA_CLIENT_LIBRARIES = {"confluent_kafka"}


def test_nothing_outside_pubsub_kafka_imports_it() -> None:
    for path in sorted(PACKAGE.rglob("*.py")):
        if PACKAGE / "kafka" in path.parents:
            continue
        for name in imports_of(path):
            if path != KAFKA_DISPATCHER:
                assert not name.startswith("pubsub.kafka"), f"{path}: {name}"
            assert name.split(".")[0] not in WIRE_THIRD_PARTY, f"{path}: {name}"
            assert name.split(".")[0] not in KAFKA_CLIENT_LIBRARIES, f"{path}: {name}"


def test_confluent_kafka_is_imported_only_by_the_cluster_module() -> None:
    for path in sorted(PACKAGE.rglob("*.py")):
        if path == PACKAGE / "kafka" / "cluster.py":
            continue
        for name in imports_of(path):
            assert name.split(".")[0] not in KAFKA_CLIENT_LIBRARIES, f"{path}: {name}"


def test_the_dispatcher_imports_pubsub_kafka_only_inside_functions() -> None:
    tree = ast.parse(KAFKA_DISPATCHER.read_text())
    for node in tree.body:
        if isinstance(node, ast.Import | ast.ImportFrom):
            names = (
                [node.module] if isinstance(node, ast.ImportFrom) else [a.name for a in node.names]
            )
            assert not any((n or "").startswith("pubsub.kafka") for n in names), names


def test_a_file_target_loads_no_kafka_library(tmp_path: Path) -> None:
    code = (
        "import sys, pubsub\n"
        f"with pubsub.connect({str(tmp_path / 'x.db')!r}) as log:\n"
        "    log.create_topic('t')\n"
        "    log.produce('t', b'v')\n"
        "kafka = ('confluent_kafka', 'pubsub.kafka')\n"
        "loaded = sorted(m for m in sys.modules if m.startswith(kafka))\n"
        "print(loaded)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stdout.strip() == "[]", done.stdout


def test_writes_never_use_a_deferred_begin() -> None:
    for path in [*modules(), *modules("db"), *modules("commands")]:
        text = path.read_text()
        if path.name == "bench.py":
            continue  # the raw-sqlite3 baselines of pubsub bench, not pubsub's storage
        if path.name == "transaction.py":
            # The one deferred BEGIN is ReadTransaction's, which never writes.
            assert text.count('execute("BEGIN DEFERRED")') == 1
            assert 'execute("BEGIN")' not in text
            continue
        assert 'execute("BEGIN")' not in text and "BEGIN DEFERRED" not in text, path.name
        assert '"BEGIN IMMEDIATE"' not in text, f"{path.name}: transactions live in transaction.py"


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
        "for name in list(sys.modules):\n"
        "    if name.split('.')[0] in ('rich', 'sqlite_utils', 'pydantic', 'kafka', 'cramjam'):\n"
        "        raise SystemExit('imported before the command: ' + name)\n"
        f"sys.argv = ['pubsub', '--db', {str(db)!r}, *{argv!r}]\n"
        "try:\n"
        "    main()\n"
        "except SystemExit as exit:\n"
        "    assert not exit.code, exit.code\n"
        "heavy = ('rich', 'sqlite_utils', 'pydantic', 'kafka', 'cramjam', 'google_crc32c')\n"
        "bad = sorted(n for n in sys.modules if n.split('.')[0] in heavy)\n"
        "print(','.join(bad))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1:] in ([""], []), result.stdout
