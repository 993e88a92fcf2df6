"""Plain `--help`: click-style metavars instead of Typer's ``<bool>``, ``<list[str]>``, ``{INPUT}``.

Typer 0.29 renders every option's Python type in angle brackets (``--json <bool>``) and
required arguments in braces on the usage line. Readers of ``pprl --help`` are analysts
and data teams, not Python programmers, so flags show no type and values show click's
upper-case names (``PATH``, ``TEXT``, ``INTEGER``). Applied once, for every command.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from typer.core import TyperArgument, TyperOption

if TYPE_CHECKING:  # typer 0.29 vendors click: the partner client's install has no `click`
    import click

__all__ = ["plain_help"]


_NAMES = {"str": "TEXT", "int": "INTEGER", "float": "NUMBER", "bool": "BOOLEAN"}


def _option_type(self: TyperOption, ctx: click.Context) -> str | None:
    if self.metavar is not None:
        return self.metavar
    if self.is_flag or self.count:
        return None
    desc = self.type_descriptor
    if desc.is_choice:
        return "[" + "|".join(str(getattr(c, "value", c)) for c in desc.choices or ()) + "]"
    if desc.is_path:
        return "PATH"
    bare = self._bare_type(desc.annotation).removeprefix("list[").removesuffix("]")
    return _NAMES.get(bare, bare.upper())


def _argument_usage(self: TyperArgument) -> str:
    name = self.display_name_raw.upper()
    name = name if self.required else f"[{name}]"
    return name if self.nargs == 1 else f"{name}..."


def _argument_type(self: TyperArgument, ctx: click.Context) -> str | None:
    return None  # the argument's name already says what it is; its help says the rest


def plain_help() -> None:
    """Make every Typer command's help use plain metavars (idempotent)."""
    setattr(TyperOption, "display_type_rich", _option_type)  # noqa: B010
    setattr(TyperArgument, "display_type_rich", _argument_type)  # noqa: B010
    setattr(TyperArgument, "_usage_display_name", _argument_usage)  # noqa: B010
