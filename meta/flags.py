"""Command-line flags from a frozen dataclass: one flag per field, its docstring the help text.

A field's docstring (the string literal under it, as tyro and CleanRL write them) is its ``--help`` line, with the
default appended, so a new option is one new field. Flags default to ``argparse.SUPPRESS``: the namespace holds only
the flags actually given, which lets them override a config file and lets a command refuse them where they make no
sense. A field may carry ``metadata``: ``flag`` (another flag name), ``choices``, ``metavar`` or
``positional=True``. :class:`Parser` is both commands' ``ArgumentParser``: every error one line, a misspelled flag
answered with the nearest one.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import difflib
import inspect
import textwrap
from collections.abc import Iterable, Sequence
from typing import Any, NoReturn


class Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose every error is one line, ``PROG: error: ...`` with exit status 2, and the usage only
    for ``--help``: argparse's own prints the whole usage first, a dozen lines above the one that says what is
    wrong. An unknown flag is answered with the nearest known one (:func:`nearest`)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")

    def parse_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> argparse.Namespace:
        parsed, extra = self.parse_known_args(args, namespace)
        if extra:
            unknown = next((a for a in extra if a.startswith("-")), None)
            if unknown is None:
                self.error(f"unrecognized arguments: {' '.join(extra)}")
            name = unknown.partition("=")[0]
            close = nearest(name, [s for a in self._actions for s in a.option_strings if s.startswith("--")])
            self.error(
                f"unrecognized argument {name}: "
                + (f"did you mean {close}?" if close else f"{self.prog} --help lists the options")
            )
        return parsed


def nearest(name: str, known: Iterable[str]) -> str | None:
    """The known name nearest a misspelled ``name`` (:func:`difflib.get_close_matches`), or ``None``: a refusal that
    asks "did you mean --iterations?" says more than a list of every name."""
    close = difflib.get_close_matches(name, list(known), n=1)
    return close[0] if close else None


def field_docs(cls: type) -> dict[str, str]:
    """The docstring under each field of dataclass ``cls``, in field order, whitespace folded to one line.

    Read from the class source with :mod:`ast`: Python keeps no trace of a bare string after an annotated
    assignment at run time.
    """
    tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    node = next(n for n in tree.body if isinstance(n, ast.ClassDef))
    docs: dict[str, str] = {}
    for stmt, after in zip(node.body, node.body[1:], strict=False):
        if (
            isinstance(stmt, ast.AnnAssign)
            and isinstance(stmt.target, ast.Name)
            and isinstance(after, ast.Expr)
            and isinstance(after.value, ast.Constant)
            and isinstance(after.value.value, str)
        ):
            docs[stmt.target.id] = " ".join(after.value.value.split())
    return docs


def flag(name: str) -> str:
    """The flag of field ``name``: ``--inner-lr`` for ``inner_lr``."""
    return "--" + name.replace("_", "-")


def _shown(default: Any) -> str:
    if isinstance(default, tuple):
        return " ".join(map(str, default)) or "none"
    return str(default).lower() if isinstance(default, bool) else str(default)


def add_flags(parser: argparse.ArgumentParser, cls: type, skip: tuple[str, ...] = ()) -> None:
    """Add a flag for every field of dataclass ``cls`` but ``skip``: bool fields as ``--x/--no-x``, tuples as
    ``nargs``, ``... | None`` fields as their type; help is the field's docstring and its default."""
    docs = field_docs(cls)
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        meta, kind = f.metadata, str(f.type)
        default = f.default if f.default is not dataclasses.MISSING else None
        # A field without a default value (None) says in its docstring what happens without it, or has none.
        if meta.get("positional") or (default is None and "default" in docs[f.name]):
            text = docs[f.name]
        else:
            text = f"{docs[f.name]} (default: {'none' if default is None else _shown(default)})"
        kw: dict[str, Any] = {"help": text.replace("%", "%%")}
        if not meta.get("positional"):
            kw.update(dest=f.name, default=argparse.SUPPRESS)
        base = kind.removesuffix(" | None")
        if base == "bool":
            kw["action"] = argparse.BooleanOptionalAction
        elif base.startswith("tuple["):
            item = base.removeprefix("tuple[").split(",")[0]
            kw.update(type=int if item == "int" else str, nargs="+" if not meta.get("empty") else "*")
            kw["metavar"] = meta.get("metavar", "N" if item == "int" else f.name.upper().rstrip("S"))
        elif base in ("int", "float"):
            kw.update(type=int if base == "int" else float, metavar=meta.get("metavar", "N" if base == "int" else "X"))
        else:
            kw.update(type=str, metavar=meta.get("metavar", f.name.upper()))
        if "choices" in meta:
            kw["choices"] = meta["choices"]
            if "metavar" not in meta:
                kw.pop("metavar", None)  # argparse shows the choices instead
        if meta.get("positional"):
            parser.add_argument(f.name, **kw)
        else:
            parser.add_argument(meta.get("flag", flag(f.name)), **kw)
