"""Turn nested plain dicts (composed YAML) into typed dataclasses, strictly.

Unknown keys, wrong types and values a dataclass's ``__post_init__`` refuses become a
:class:`UserError` naming the dotted key, so a typo fails at start-up, not an hour in.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, TypeVar, Union

from mindspeed_rl.errors import UserError

T = TypeVar("T")


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp).replace("typing.", ""))


def _convert(value: Any, tp: Any, key: str) -> Any:
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(value, arg, key)
            except UserError as err:
                errors.append(str(err))
        raise UserError(errors[0] if errors else f"{key}: bad value {value!r}")
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise UserError(f"{key} must be a mapping of {_type_name(tp)} fields, got {value!r}")
        return build(tp, value, key)
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise UserError(f"{key} must be a list, got {value!r}")
        (item,) = typing.get_args(tp) or (Any,)
        return [_convert(v, item, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise UserError(f"{key} must be a mapping, got {value!r}")
        kt, vt = typing.get_args(tp) or (Any, Any)
        return {_convert(k, kt, key): _convert(v, vt, f"{key}.{k}") for k, v in value.items()}
    if tp is bool:
        if not isinstance(value, bool):
            raise UserError(f"{key} must be true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise UserError(f"{key} must be an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise UserError(f"{key} must be a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise UserError(f"{key} must be a string, got {value!r}")
        return value
    return value


def build(cls: type[T], data: dict[str, Any] | None, prefix: str = "") -> T:
    """An instance of dataclass ``cls`` from ``data``; missing keys keep their defaults."""
    data = dict(data or {})
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}  # type: ignore[arg-type]
    hints = typing.get_type_hints(cls)
    unknown = sorted(set(data) - set(fields))
    if unknown:
        where = f"{prefix}.{unknown[0]}" if prefix else unknown[0]
        raise UserError(
            f"unknown config key {where}; allowed under {prefix or 'the top level'}: "
            + ", ".join(sorted(fields))
        )
    kwargs = {}
    for name, value in data.items():
        key = f"{prefix}.{name}" if prefix else name
        kwargs[name] = _convert(value, hints[name], key)
    try:
        return cls(**kwargs)
    except TypeError as err:  # a required field without a default
        raise UserError(f"{prefix or cls.__name__}: {err}") from None
    except ValueError as err:
        if isinstance(err, UserError):
            raise
        msg = str(err)
        raise UserError(
            msg if not prefix or msg.startswith(prefix) else f"{prefix}: {msg}"
        ) from None


def to_dict(obj: Any) -> Any:
    """Plain nested dicts of a config dataclass (for logging and checkpoints)."""
    return dataclasses.asdict(obj)
