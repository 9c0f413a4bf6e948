"""The public API: every exported name resolves and has a docstring, and so do its members."""

import inspect

import pytest

import pubsub

# OffsetReset is a typing alias (Literal["earliest", "latest"]): it cannot carry a docstring.
NAMES = [name for name in pubsub.__all__ if name not in ("__version__", "OffsetReset")]


@pytest.mark.parametrize("name", NAMES)
def test_exported_name_is_documented(name: str) -> None:
    obj = getattr(pubsub, name)
    assert inspect.getdoc(obj), f"pubsub.{name} has no docstring"


@pytest.mark.parametrize("name", [n for n in NAMES if inspect.isclass(getattr(pubsub, n))])
def test_public_members_are_documented(name: str) -> None:
    cls = getattr(pubsub, name)
    for member, value in vars(cls).items():
        if member.startswith("_") or member in ("code", "exit_code", "default_hint"):
            continue
        if callable(value) or isinstance(value, property | staticmethod | classmethod):
            assert inspect.getdoc(value), f"{name}.{member} has no docstring"


def test_unknown_attribute() -> None:
    with pytest.raises(AttributeError):
        _ = pubsub.NoSuchThing  # type: ignore[attr-defined]
    assert set(NAMES) <= set(dir(pubsub))
