"""pyrt.api.params: booleans, ints, filters, JSON bodies and field types."""

from __future__ import annotations

import pytest

from pyrt.api.params import (
    get_field,
    parse_filters,
    parse_json_body,
    parse_query,
    query_bool,
    query_filters,
    query_int,
    query_list,
    query_str,
)
from pyrt.errors import InvalidArgument


@pytest.mark.parametrize("text,want", [("1", True), ("true", True), ("True", True),
                                       ("0", False), ("false", False), ("False", False)])
def test_bool_values(text: str, want: bool) -> None:
    assert query_bool(parse_query(f"all={text}"), "all") is want


def test_bool_default_and_bad() -> None:
    assert query_bool({}, "all") is False
    assert query_bool({}, "all", True) is True
    assert query_bool(parse_query("all="), "all", True) is True
    with pytest.raises(InvalidArgument, match="'all'.*'yes' is not a boolean"):
        query_bool(parse_query("all=yes"), "all")


def test_ints_strings_lists() -> None:
    q = parse_query("limit=5&t=-1&x=abc&changes=CMD%20a&changes=ENV%20b&changes=")
    assert query_int(q, "limit") == 5
    assert query_int(q, "missing", 7) == 7
    assert query_int(q, "t", minimum=-1) == -1
    with pytest.raises(InvalidArgument, match="'x'.*not an integer"):
        query_int(q, "x")
    with pytest.raises(InvalidArgument, match="'t'.*less than 0"):
        query_int(q, "t", minimum=0)
    assert query_str(q, "x") == "abc" and query_str(q, "nope", "d") == "d"
    assert query_list(q, "changes") == ["CMD a", "ENV b"]


def test_filters_forms() -> None:
    assert parse_filters("") == {}
    assert parse_filters("null") == {}
    assert parse_filters('{"dangling": ["true"], "label": ["a=b", "c"]}') == {
        "dangling": ["true"], "label": ["a=b", "c"]}
    assert parse_filters('{"dangling": {"true": true, "false": false}}') == {
        "dangling": ["true"]}
    q = parse_query('filters=%7B%22reference%22%3A%5B%22busy*%22%5D%7D')
    assert query_filters(q) == {"reference": ["busy*"]}
    for bad, match in (("{nope", "not JSON"), ("[1]", "JSON object"),
                       ('{"a": [1]}', "'a' must be strings"), ('{"a": 3}', "'a' must be")):
        with pytest.raises(InvalidArgument, match=match):
            parse_filters(bad)


def test_json_body() -> None:
    assert parse_json_body(b'{"a": 1}') == {"a": 1}
    assert parse_json_body(b"  ", allow_empty=True) is None
    with pytest.raises(InvalidArgument, match="empty body"):
        parse_json_body(b"")
    with pytest.raises(InvalidArgument, match="malformed JSON"):
        parse_json_body(b'{"a": ', "container config")
    with pytest.raises(InvalidArgument, match="not UTF-8"):
        parse_json_body(b"\xff\xfe")


def test_get_field_types() -> None:
    body = {"Name": "x", "Count": 3, "Flag": True, "Env": ["A=1"], "Ratio": 2, "Nil": None}
    assert get_field(body, "Name", str) == "x"
    assert get_field(body, "Count", int) == 3
    assert get_field(body, "Flag", bool) is True
    assert get_field(body, "Env", list) == ["A=1"]
    assert get_field(body, "Ratio", float) == 2.0
    assert get_field(body, "Nil", str, "dflt") == "dflt"
    assert get_field(body, "Missing", int, 9) == 9
    with pytest.raises(InvalidArgument, match="field 'Count' must be a string, got an integer"):
        get_field(body, "Count", str)
    with pytest.raises(InvalidArgument, match="field 'Flag' must be an integer, got a boolean"):
        get_field(body, "Flag", int)
    with pytest.raises(InvalidArgument, match="expected a JSON object, got an array"):
        get_field([], "x", str)
