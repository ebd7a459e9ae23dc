"""Command-line flags generated from (nested) config dataclasses.

Each leaf field of a frozen config dataclass becomes one flag: its name from the field name
(``batch_size`` -> ``--batch-size``), its parsing from the field's type (``bool`` ->
``--x/--no-x``, ``tuple[float, float]`` -> two values, ``int | None`` -> an int), its help
from the ``Attributes:`` section of the class docstring, and the default shown in ``--help``
from the dataclass default. So an option is written once, in its dataclass.

The parser default of every generated flag is "not given" (``argparse.SUPPRESS``): a flag
left out keeps the value of whatever configuration it is applied to (a recipe, a ``--config``
file, a resumed run), and :func:`apply_flags` replaces exactly the fields whose flags were given.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import re
import types
import typing
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from contrastive.errors import ContrastiveError


@dataclass(frozen=True)
class Flag:
    """How one field appears on the command line, where the generated form does not fit.

    Attributes:
        name: The flag (``--lr``); default: the field name with dashes.
        choices: The allowed values.
        metavar: Placeholder(s) in ``--help``.
        show_default: Whether ``--help`` shows the dataclass default (off for fields every
            run must set, such as the run directory).
    """

    name: str | None = None
    choices: Sequence[str] | None = None
    metavar: str | tuple[str, ...] | None = None
    show_default: bool = True


@dataclass(frozen=True)
class ConfigFlag:
    """One generated flag.

    Attributes:
        path: Dotted path of the field in the root config (``optim.base_learning_rate``);
            also the ``dest`` of the flag in the parsed namespace.
        name: The flag (``--lr``).
        type: The field's type annotation, resolved.
        default: The dataclass default.
        help: The field's description from its class docstring.
    """

    path: str
    name: str
    type: Any
    default: Any
    help: str


def config_flags(
    config_class: type, flags: Mapping[str, Flag] | None = None, exclude: Collection[str] = ()
) -> list[ConfigFlag]:
    """The flags of every leaf field of ``config_class``, in field order.

    Args:
        config_class: The root dataclass; fields whose type is a dataclass are walked into.
        flags: Custom names by dotted field path.
        exclude: Dotted paths that get no flag.
    """
    flags = flags or {}
    result = []
    for path, field_type, default, help_text in _leaves(config_class):
        if path in exclude:
            continue
        name = flags.get(path, Flag()).name or "--" + path.rpartition(".")[2].replace("_", "-")
        result.append(ConfigFlag(path, name, field_type, default, help_text))
    return result


def add_config_flags(
    parser: argparse.ArgumentParser,
    config_class: type,
    groups: Sequence[tuple[argparse._ActionsContainer, Sequence[str]]] = (),
    flags: Mapping[str, Flag] | None = None,
    exclude: Collection[str] = (),
) -> None:
    """Adds one flag per leaf field of ``config_class`` to ``parser``.

    Args:
        parser: The parser; fields no group claims are added to it directly.
        config_class: The root config dataclass.
        groups: ``(argument group, field paths or prefixes)`` pairs: a group's flags come in
            the order of its paths (a component such as ``optim`` brings all its fields).
        flags: Custom names, choices and metavars by dotted field path.
        exclude: Dotted paths that get no flag.
    """
    flags = flags or {}
    remaining = {flag.path: flag for flag in config_flags(config_class, flags, exclude)}
    placed: list[tuple[argparse._ActionsContainer, ConfigFlag]] = []
    for container, prefixes in groups:
        for prefix in prefixes:
            for path in [p for p in remaining if p == prefix or p.startswith(prefix + ".")]:
                placed.append((container, remaining.pop(path)))
    placed += [(parser, flag) for flag in remaining.values()]
    for container, flag in placed:
        _add_flag(container, flag, flags.get(flag.path, Flag()))


def flag_values(args: argparse.Namespace, config_class: type) -> dict[str, Any]:
    """The values of the generated flags that were given, by dotted field path."""
    given = vars(args)
    values = {path: given[path] for path, *_ in _leaves(config_class) if path in given}
    # argparse gives lists for nargs; the config fields are tuples.
    return {path: tuple(v) if isinstance(v, list) else v for path, v in values.items()}


def apply_flags(config: Any, values: Mapping[str, Any], flags: Sequence[ConfigFlag]) -> Any:
    """``config`` with the fields at the given dotted paths replaced.

    Raises:
        ContrastiveError: If a value is invalid; the message names the flag that alone makes
            the configuration invalid, where one does.
    """
    try:
        return _replace_paths(config, values)
    except ContrastiveError as error:
        names = {flag.path: flag.name for flag in flags}
        for path, value in values.items():
            try:
                _replace_paths(config, {path: value})
            except ContrastiveError as alone:
                shown = " ".join(map(str, value)) if isinstance(value, tuple) else value
                raise ContrastiveError(f"{names.get(path, path)} {shown}: {alone}") from None
        raise error


def _replace_paths(config: Any, values: Mapping[str, Any]) -> Any:
    top: dict[str, Any] = {}
    nested: dict[str, dict[str, Any]] = {}
    for path, value in values.items():
        head, _, rest = path.partition(".")
        if rest:
            nested.setdefault(head, {})[rest] = value
        else:
            top[head] = value
    for head, inner in nested.items():
        top[head] = _replace_paths(getattr(config, head), inner)
    return dataclasses.replace(config, **top)


def _leaves(
    config_class: type, prefix: str = "", defaults: Any = None
) -> Iterator[tuple[str, Any, Any, str]]:
    """``(path, type, default, help)`` of every non-dataclass field, depth first; defaults
    are read from ``config_class()``, so a component's default is the root's, not its own."""
    defaults = config_class() if defaults is None else defaults
    hints = typing.get_type_hints(config_class)
    docs = attribute_docs(config_class)
    for field in dataclasses.fields(config_class):
        field_type, default = hints[field.name], getattr(defaults, field.name)
        if dataclasses.is_dataclass(field_type):
            yield from _leaves(field_type, f"{prefix}{field.name}.", default)
        else:
            yield prefix + field.name, field_type, default, docs.get(field.name, "")


def attribute_docs(cls: type) -> dict[str, str]:
    """The field descriptions of a Google-style ``Attributes:`` docstring section.

    Markup is reduced to plain text: ````x```` and ``:role:`x``` become ``x``.
    """
    lines = (inspect.getdoc(cls) or "").splitlines()
    if "Attributes:" not in lines:
        return {}
    docs: dict[str, list[str]] = {}
    indent = None
    for line in lines[lines.index("Attributes:") + 1 :]:
        if not line.strip():
            continue
        depth = len(line) - len(line.lstrip())
        indent = depth if indent is None else indent
        if depth < indent or depth == 0:
            break  # the next section
        entry = re.match(r"(\w+)(?: \(.*?\))?: (.*)", line.strip())
        if depth == indent and entry:
            docs[entry[1]] = [entry[2]]
        elif docs:
            docs[next(reversed(docs))].append(line.strip())
    return {name: _plain(" ".join(parts)) for name, parts in docs.items()}


def _plain(text: str) -> str:
    text = re.sub(r":\w+:`~?([^`]+)`", r"\1", text)
    return text.replace("``", "")


def _add_flag(container: argparse._ActionsContainer, flag: ConfigFlag, custom: Flag) -> None:
    kwargs: dict[str, Any] = {"dest": flag.path, "default": argparse.SUPPRESS}
    shown = _shown(flag.default) if custom.show_default else ""
    # argparse expands %-formats in help texts.
    kwargs["help"] = (flag.help + (f" (default: {shown})" if shown else "")).replace("%", "%%")
    field_type = _without_none(flag.type)
    value_type = field_type
    if field_type is bool:
        kwargs["action"] = argparse.BooleanOptionalAction
    elif typing.get_origin(field_type) is tuple:
        value_type = typing.get_args(field_type)[0]
        kwargs["nargs"] = len(typing.get_args(field_type))
    if field_type is not bool:
        kwargs["type"] = _converter(value_type)
    if custom.choices is not None:
        kwargs["choices"] = list(custom.choices)
    elif field_type is not bool:
        # Short placeholders for numbers, MIN MAX for pairs (ours are ranges); others are
        # named after the flag, not after the dest (a dotted path).
        name = flag.name.lstrip("-").upper().replace("-", "_")
        kwargs["metavar"] = {int: "N", float: "X"}.get(value_type, name)
        if kwargs.get("nargs") == 2:
            kwargs["metavar"] = ("MIN", "MAX")
    if custom.metavar is not None:
        kwargs["metavar"] = custom.metavar
    container.add_argument(flag.name, **kwargs)


def _without_none(field_type: Any) -> Any:
    """``X`` for ``X | None``; other types unchanged."""
    args = [arg for arg in typing.get_args(field_type) if arg is not type(None)]
    is_union = typing.get_origin(field_type) in (typing.Union, types.UnionType)
    return args[0] if is_union and len(args) == 1 else field_type


def _converter(field_type: Any) -> Callable[[str], Any]:
    """``int``, ``float`` or ``str``; for a union such as ``int | str``, the first that parses."""
    if typing.get_origin(field_type) not in (typing.Union, types.UnionType):
        return field_type
    options = typing.get_args(field_type)

    def convert(text: str) -> Any:
        for option in options:
            try:
                return option(text)
            except ValueError:
                continue
        raise ValueError(text)

    convert.__name__ = " or ".join(option.__name__ for option in options)
    return convert


def _shown(default: Any) -> str:
    """The default as it would be typed on the command line; empty for None and ``""``."""
    if isinstance(default, tuple):
        return " ".join(_shown(value) for value in default)
    if isinstance(default, bool):
        return "on" if default else "off"
    if isinstance(default, float):
        return f"{default:g}"
    return "" if default is None else str(default)
