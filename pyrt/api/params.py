"""Query and body parsing for the Engine API, with errors that name the field.

    q = parse_query("all=1&filters=%7B%22dangling%22%3A%5B%22true%22%5D%7D")
    query_bool(q, "all")                 # True   ("1", "true", "True" / "0", "false", "False")
    query_int(q, "limit", default=-1)    # -1
    query_filters(q)                     # {"dangling": ["true"]}
    body = parse_json_body(raw, "tag")   # InvalidArgument on malformed JSON
    get_field(body, "Name", str)         # InvalidArgument naming "Name" on a wrong type

Every failure is InvalidArgument (HTTP 400) whose message names the parameter.
"""

from __future__ import annotations

import json
import urllib.parse
from typing import Any, TypeVar

from pyrt.errors import InvalidArgument

Query = dict[str, list[str]]
T = TypeVar("T")

TRUE_VALUES = ("1", "true", "True")
FALSE_VALUES = ("0", "false", "False")


def parse_query(raw: str) -> Query:
    """A query string -> {name: [values...]} (blank values kept)."""
    try:
        return urllib.parse.parse_qs(raw, keep_blank_values=True, strict_parsing=False,
                                     errors="strict")
    except (ValueError, UnicodeDecodeError) as e:
        raise InvalidArgument(f"malformed query string: {e}") from None


def query_str(q: Query, name: str, default: str = "") -> str:
    values = q.get(name)
    if not values:
        return default
    return values[-1]


def query_list(q: Query, name: str) -> list[str]:
    return [v for v in q.get(name, []) if v != ""]


def query_bool(q: Query, name: str, default: bool = False) -> bool:
    values = q.get(name)
    if not values or values[-1] == "":
        return default
    value = values[-1]
    if value in TRUE_VALUES:
        return True
    if value in FALSE_VALUES:
        return False
    raise InvalidArgument(f"invalid value for {name!r}: {value!r} is not a boolean "
                          "(1, true, True, 0, false or False)")


def query_int(q: Query, name: str, default: int = 0, *, minimum: int | None = None) -> int:
    values = q.get(name)
    if not values or values[-1] == "":
        return default
    value = values[-1]
    try:
        n = int(value, 10)
    except ValueError:
        raise InvalidArgument(f"invalid value for {name!r}: {value!r} is not an integer"
                              ) from None
    if minimum is not None and n < minimum:
        raise InvalidArgument(f"invalid value for {name!r}: {n} is less than {minimum}")
    return n


def parse_filters(text: str, name: str = "filters") -> dict[str, list[str]]:
    """Docker's filters JSON: {"key": ["v", ...]} or the old {"key": {"v": true}} form."""
    if text.strip() == "":
        return {}
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as e:
        raise InvalidArgument(f"invalid {name}: not JSON ({e.msg} at {e.pos})") from None
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise InvalidArgument(f"invalid {name}: expected a JSON object of lists, "
                              f"got {type(raw).__name__}")
    out: dict[str, list[str]] = {}
    for key, values in raw.items():
        if isinstance(values, list):
            if not all(isinstance(v, str) for v in values):
                raise InvalidArgument(f"invalid {name}: values of {key!r} must be strings")
            vals = list(values)
        elif isinstance(values, dict):
            if not all(isinstance(v, bool) for v in values.values()):
                raise InvalidArgument(f"invalid {name}: values of {key!r} must map to "
                                      "booleans")
            vals = [k for k, on in values.items() if on]
        elif isinstance(values, str):
            vals = [values]
        else:
            raise InvalidArgument(f"invalid {name}: {key!r} must be a list of strings")
        out[str(key)] = vals
    return out


def query_filters(q: Query, name: str = "filters") -> dict[str, list[str]]:
    return parse_filters(query_str(q, name), name)


def parse_json_body(raw: bytes, what: str = "request body", *, allow_empty: bool = False
                    ) -> Any:
    """JSON body -> value; empty -> None when allowed. Malformed -> InvalidArgument."""
    if not raw.strip():
        if allow_empty:
            return None
        raise InvalidArgument(f"{what}: empty body, expected JSON")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidArgument(f"{what}: body is not UTF-8") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise InvalidArgument(f"{what}: malformed JSON: {e.msg} "
                              f"(line {e.lineno} column {e.colno})") from None


_TYPE_NAMES: dict[type, str] = {str: "a string", int: "an integer", bool: "a boolean",
                                list: "an array", dict: "an object", float: "a number"}


def type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    for t, n in _TYPE_NAMES.items():
        if type(value) is t:
            return n
    return type(value).__name__


def get_field(obj: Any, name: str, kind: type[T], default: T | None = None, *,
              what: str = "body") -> T | None:
    """obj[name] checked to be of `kind` (null/missing -> default). For int, a bool is
    refused; for float an int is accepted."""
    if not isinstance(obj, dict):
        raise InvalidArgument(f"{what}: expected a JSON object, got {type_name(obj)}")
    if name not in obj or obj[name] is None:
        return default
    value = obj[name]
    ok = isinstance(value, kind)
    if kind is int and isinstance(value, bool):
        ok = False
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
        ok = True
    if not ok:
        want = _TYPE_NAMES.get(kind, kind.__name__)
        raise InvalidArgument(f"{what}: field {name!r} must be {want}, got {type_name(value)}")
    return value  # type: ignore[no-any-return]


__all__ = [
    "FALSE_VALUES",
    "TRUE_VALUES",
    "Query",
    "get_field",
    "parse_filters",
    "parse_json_body",
    "parse_query",
    "query_bool",
    "query_filters",
    "query_int",
    "query_list",
    "query_str",
    "type_name",
]
