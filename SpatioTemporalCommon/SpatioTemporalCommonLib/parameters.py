"""One definition per user-facing parameter: type, unit, default, valid range or choices, help.

A module declares its parameters once, as a dataclass whose fields are made with :func:`parameter`.
The logic takes an instance; :func:`validate_parameters` checks ranges and choices in one place;
:func:`add_parameter_arguments` builds the command-line options from the same fields; the Slicer
parameter node uses the same field names.
"""

from __future__ import annotations

import argparse
import dataclasses
import typing
from dataclasses import dataclass
from typing import Any

from .errors import InputError


@dataclass(frozen=True)
class ParameterInfo:
    """Metadata of one parameter (stored in the dataclass field's metadata)."""

    help: str
    unit: str = ""
    choices: tuple[Any, ...] | None = None
    minimum: float | None = None
    maximum: float | None = None
    minimum_inclusive: bool = True
    maximum_inclusive: bool = True
    option: str | None = None
    metavar: str | None = None

    def range_text(self) -> str:
        """The valid range in interval notation, e.g. ``(0, 90]``."""
        low = "(" if not self.minimum_inclusive else "["
        high = ")" if not self.maximum_inclusive else "]"
        minimum = "-inf" if self.minimum is None else f"{self.minimum:g}"
        maximum = "inf" if self.maximum is None else f"{self.maximum:g}"
        return f"{low}{minimum}, {maximum}{high}"


def parameter(default: Any = dataclasses.MISSING, *, help: str, unit: str = "", choices=None, minimum=None,
              maximum=None, minimum_inclusive: bool = True, maximum_inclusive: bool = True,
              option: str | None = None, metavar: str | None = None, default_factory=dataclasses.MISSING):
    """A dataclass field that carries its :class:`ParameterInfo`.

    Parameters
    ----------
    default : object
        Default value (use ``default_factory`` for mutable defaults).
    help : str
        One-line help shown in the command line and the panel's tooltip.
    unit : str
        Physical unit, e.g. ``"ms"``, ``"deg"``, ``"/mM/s"``.
    choices : sequence, optional
        Allowed values.
    minimum, maximum : float, optional
        Range limits; ``minimum_inclusive`` / ``maximum_inclusive`` say whether they are allowed.
    option : str, optional
        Command-line option name if it differs from ``--field-name``.
    metavar : str, optional
        Placeholder shown in the command line's usage.
    """
    info = ParameterInfo(help, unit, tuple(choices) if choices is not None else None, minimum, maximum,
                         minimum_inclusive, maximum_inclusive, option, metavar)
    return dataclasses.field(default=default, default_factory=default_factory, metadata={"parameter": info})


def parameter_fields(parameters_class) -> list[tuple[dataclasses.Field, ParameterInfo]]:
    """The fields of a parameters dataclass that were declared with :func:`parameter`."""
    return [(f, f.metadata["parameter"]) for f in dataclasses.fields(parameters_class) if "parameter" in f.metadata]


def option_name(field: dataclasses.Field, info: ParameterInfo) -> str:
    """The command-line option of a field, e.g. ``--flip-angle``."""
    return info.option or "--" + field.name.replace("_", "-")


def _describe(field: dataclasses.Field, info: ParameterInfo, value: Any) -> str:
    unit = f" {info.unit}" if info.unit else ""
    return f"{option_name(field, info)} {value}{unit}"


def validate_parameters(parameters) -> None:
    """Check every parameter's choices and range; raise :class:`InputError` naming the fix."""
    for field, info in parameter_fields(type(parameters)):
        value = getattr(parameters, field.name)
        if value is None:
            continue
        if info.choices is not None and value not in info.choices:
            raise InputError(
                f"{_describe(field, info, value)} is not one of {', '.join(map(str, info.choices))}: {info.help}"
            )
        for item in value if isinstance(value, tuple) else (value,):
            _check_range(field, info, item)


def _check_range(field: dataclasses.Field, info: ParameterInfo, value: Any) -> None:
    """Raise InputError when a number lies outside the field's range."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return
    too_low = info.minimum is not None and (value < info.minimum or (value == info.minimum and not info.minimum_inclusive))
    too_high = info.maximum is not None and (value > info.maximum or (value == info.maximum and not info.maximum_inclusive))
    if too_low or too_high or value != value:
        unit = f" {info.unit}" if info.unit else ""
        raise InputError(f"{_describe(field, info, value)} is outside {info.range_text()}{unit}: "
                         f"give {info.help[0].lower() + info.help[1:]}")


def _scalar_type(annotation: Any) -> Any:
    """The basic type of a field annotation such as ``float | None`` (``tuple[float, ...]`` stays a tuple)."""
    if typing.get_origin(annotation) is tuple:
        return annotation
    arguments = [a for a in typing.get_args(annotation) if a is not type(None)]
    return _scalar_type(arguments[0]) if arguments else annotation


def _number_list_parser(item_type: type):
    """An argparse ``type`` that reads comma-separated numbers into a tuple."""

    def parse(text: str) -> tuple:
        try:
            return tuple(item_type(value) for value in text.split(",") if value.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of numbers") from None

    return parse


def _default_metavar(info: ParameterInfo, kind: Any) -> str | None:
    """Placeholder from the unit (``/mM/s`` -> ``PER_MM_PER_S``), else ``N`` for counts and ``X`` for numbers."""
    if info.metavar or info.choices is not None:
        return info.metavar
    if info.unit:
        text = info.unit.upper().replace("/", "_PER_").strip("_").replace("__", "_")
        return "".join(c if c.isalnum() or c == "_" else "_" for c in text)
    return {int: "N", float: "X"}.get(kind)


def add_parameter_arguments(parser: argparse.ArgumentParser, parameters_class, *, exclude=()) -> None:
    """Add one option per parameter field to ``parser`` (booleans become on/off flags)."""
    hints = typing.get_type_hints(parameters_class)
    for field, info in parameter_fields(parameters_class):
        if field.name in exclude:
            continue
        kind = _scalar_type(hints[field.name])
        default = field.default if field.default is not dataclasses.MISSING else field.default_factory()
        unit = f" ({info.unit})" if info.unit else ""
        if kind is bool:
            parser.add_argument(option_name(field, info), dest=field.name, action=argparse.BooleanOptionalAction,
                                default=default, help=f"{info.help}")
            continue
        metavar = _default_metavar(info, kind)
        if typing.get_origin(kind) is tuple:
            kind = _number_list_parser(typing.get_args(kind)[0])
            shown_default = "" if default is None else "; default " + ",".join(f"{v:g}" for v in default)
        else:
            shown_default = "" if default is None else f"; default {default}"
        parser.add_argument(option_name(field, info), dest=field.name, type=kind, default=default,
                            choices=info.choices, metavar=metavar, help=f"{info.help}{unit}{shown_default}")


def parameters_from_arguments(parameters_class, arguments: argparse.Namespace, **overrides):
    """Build and validate a parameters instance from parsed arguments (plus explicit overrides)."""
    values = {f.name: getattr(arguments, f.name) for f, _ in parameter_fields(parameters_class)
              if hasattr(arguments, f.name)}
    values.update(overrides)
    parameters = parameters_class(**values)
    validate_parameters(parameters)
    return parameters
