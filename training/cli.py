"""Parse a script's argument dataclass with argparse (no transformers import).

The training script uses TRL's ``TrlParser``; the light scripts (evaluation, SFT
data) use this, so a random or oracle evaluation does not import torch. Each
field becomes ``--name`` (``--env-url`` works as well as ``--env_url``) with its
``metadata["help"]``; booleans are flags that accept ``--x``/``--no-x``.
"""

import argparse
import dataclasses
import sys
import types
import typing
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


def _base_type(annotation: Any) -> Any:
    """``int | None`` -> ``int``; ``Literal`` and plain types unchanged."""
    if (
        isinstance(annotation, types.UnionType)
        or typing.get_origin(annotation) is typing.Union
    ):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return args[0]
    return annotation


def parse_args(
    cls: type[T], argv: Sequence[str] | None = None, description: str = ""
) -> T:
    """Build ``cls`` (a dataclass) from command-line arguments.

    Args:
        cls: The argument dataclass; every field needs a default.
        argv: Arguments (default: ``sys.argv[1:]``).
        description: Shown by ``--help``.

    Returns:
        An instance of ``cls``.
    """
    parser = argparse.ArgumentParser(
        description=description, formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    hints = typing.get_type_hints(cls)
    for field in dataclasses.fields(cls):
        names = [f"--{field.name}"]
        if "_" in field.name:
            names.append(f"--{field.name.replace('_', '-')}")
        default = (
            field.default
            if field.default is not dataclasses.MISSING
            else field.default_factory()  # type: ignore[misc]
        )
        kind = _base_type(hints[field.name])
        kwargs: dict[str, Any] = {
            "default": default,
            "help": field.metadata.get("help", ""),
        }
        if kind is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        elif typing.get_origin(kind) is typing.Literal:
            kwargs["choices"] = typing.get_args(kind)
        elif typing.get_origin(kind) is list:
            kwargs["nargs"] = "*"
            kwargs["type"] = typing.get_args(kind)[0]
        else:
            kwargs["type"] = Path if kind is Path else kind
        parser.add_argument(*names, dest=field.name, **kwargs)
    return cls(**vars(parser.parse_args(argv)))


@contextmanager
def reported(*errors: type[BaseException]) -> Iterator[None]:
    """Turn ``errors`` (a wrong split, level, dataset) into a message and exit 2.

    A mistake in the arguments reads as one line naming the valid choices, as
    argparse reports its own, not as a traceback.
    """
    try:
        yield
    except errors as exc:
        print(f"{sys.argv[0]}: error: {exc}", file=sys.stderr)  # noqa: T201
        raise SystemExit(2) from None
