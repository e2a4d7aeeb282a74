"""The ``attention-audit run`` options, derived from the configuration's fields (``tasks.config``).

Every field with a description is one option, ``--`` and the field's name with hyphens unless its
``json_schema_extra`` names the ``flag``. The description is the option's help, followed by the field's
default in brackets (or, for an empty default, by what ``unset`` says it means). How the value is
parsed follows from the field's type: a ``Literal`` gives the choices, a tuple a comma-separated list,
and a ``bool`` a switch that sets the opposite of its default. A ``none_flag`` adds a switch that sets
the field to None (``--no-labels``). Each default is therefore written once, in ``tasks.config``.
"""

from __future__ import annotations

import shlex
import types
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel
from pydantic.fields import FieldInfo

from tasks.config import AuditConfig

Kind = Literal["str", "int", "float", "path", "list", "floats", "ints", "true", "false", "none"]
SWITCHES: dict[str, bool | None] = {"true": True, "false": False, "none": None}
"""The value each switch kind sets."""


@dataclass(frozen=True)
class Flag:
    """One ``attention-audit run`` option and the configuration field it sets.

    Attributes:
        flag: The option, e.g. ``--max-length``.
        field: Dotted path into ``AuditConfig``, e.g. ``data.max_length``.
        kind: How the value is parsed: ``str``, ``int``, ``float``, ``path``, ``list`` (comma-separated
            strings), ``floats`` / ``ints`` (comma-separated numbers), ``true`` / ``false`` (a switch that sets
            the field to that value), ``none`` (a switch that sets the field to None).
        help: One line for ``--help``.
        choices: Allowed values, if any.
    """

    flag: str
    field: str
    kind: Kind
    help: str
    choices: tuple[str, ...] | None = None


def flags_of(model: type[BaseModel], prefix: str = "") -> Iterator[Flag]:
    """The options of ``model``'s described fields, nested models included, in field order."""
    for name, info in model.model_fields.items():
        annotation = info.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            yield from flags_of(annotation, f"{prefix}{name}.")
            continue
        if info.description is None:
            continue
        extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
        kind, choices = _kind(annotation, info.default)
        flag = str(extra.get("flag") or "--" + name.replace("_", "-"))
        yield Flag(flag, prefix + name, kind, _help(info, kind, extra), choices)
        if "none_flag" in extra:
            yield Flag(str(extra["none_flag"]), prefix + name, "none", str(extra["none_help"]))


def _kind(annotation: Any, default: Any) -> tuple[Kind, tuple[str, ...] | None]:
    """The parsing kind and choices of a field's type (``X | None`` parses as ``X``)."""
    if get_origin(annotation) in (Union, types.UnionType):
        (annotation,) = [arg for arg in get_args(annotation) if arg is not type(None)]
    if annotation is bool:
        return ("false" if default else "true"), None
    if get_origin(annotation) is Literal:
        return "str", tuple(get_args(annotation))
    if get_origin(annotation) is tuple:
        items: dict[Any, Kind] = {str: "list", float: "floats", int: "ints"}
        return items[get_args(annotation)[0]], None
    scalars: dict[Any, Kind] = {str: "str", int: "int", float: "float", Path: "path"}
    return scalars[annotation], None


def _help(info: FieldInfo, kind: Kind, extra: dict[str, Any]) -> str:
    """The description, then the default: ``[128]``, ``[0.01,0.05]``; a switch to True says it is off."""
    description = str(info.description)
    if kind == "true":
        return f"{description} (off by default)"
    if kind == "false":
        return description
    default = info.default
    shown = ",".join(str(value) for value in default) if isinstance(default, tuple) else default
    shown = shown if shown not in (None, "") else extra.get("unset")
    return description if shown is None else f"{description} [{shown}]"


FLAGS: tuple[Flag, ...] = tuple(flags_of(AuditConfig))
"""Every ``attention-audit run`` option but ``--preset``, in the configuration's field order."""


def flag_for(location: Sequence[Any]) -> str:
    """The option that sets the field at a validation error's ``location`` (else the dotted location)."""
    dotted = ".".join(str(part) for part in location[:2])
    for flag in FLAGS:
        if flag.field == dotted:
            return flag.flag
    return dotted or "options"


def field_value(config: BaseModel, dotted: str) -> Any:
    """The value at a dotted path of ``config``, e.g. ``data.max_length``."""
    value: Any = config
    for part in dotted.split("."):
        value = getattr(value, part)
    return value


def command_line(config: AuditConfig, default: AuditConfig | None = None) -> str:
    """The ``attention-audit run`` command that reproduces ``config``.

    Args:
        config: The configuration to reproduce.
        default: The configuration whose values are left out; ``AuditConfig()`` when None. Pass the
            resolved default (``tasks.verdict.resolve.resolve(AuditConfig())``) for a resolved
            configuration, so that the default methods and interventions are left out too.
    """
    default = default or AuditConfig()
    words = ["attention-audit", "run"]
    for flag in FLAGS:
        value, base = field_value(config, flag.field), field_value(default, flag.field)
        if value == base:
            continue
        if flag.kind in SWITCHES:
            if value == SWITCHES[flag.kind]:
                words.append(flag.flag)
            continue
        if value is None:
            continue
        if flag.kind in ("list", "floats", "ints"):
            text = ",".join(repr(v) if isinstance(v, float) else str(v) for v in value) or "none"  # repr: exact
        else:
            text = str(value)
        words += [f"{flag.flag}={text}"] if text.startswith("-") else [flag.flag, text]  # "-x" is no option
    return " ".join(shlex.quote(word) for word in words)
