"""Output of the pyrt CLI: docker-like tables, `--format json`, Go-template style
`--format '{{.Field}}'` and `-q`.

    print_rows(rows, [("IMAGE ID", "ID"), ("SIZE", "Size")], fmt=None, quiet=False)

A row is a dict of docker's display fields ("ID", "Repository", "CreatedSince"...).
Templates support `{{.Field}}`, `{{.Field.Sub}}`, `{{json .}}`, `{{json .Field}}`,
`{{upper .F}}`, `{{lower .F}}`, `{{index .Map "key"}}`, `{{join .List ","}}`, a leading
`table ` (a header line from the field names, columns aligned) and the escapes \\t and \\n.
Imports only the standard library (it is on the path of every command).
"""

from __future__ import annotations

import json
import re
import sys
import time
from collections.abc import Iterable, Mapping, Sequence

from pyrt.errors import InvalidArgument

# typing costs ~5 ms of imports on every CLI command: annotations only need it for mypy
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, TextIO


class TemplateError(InvalidArgument):
    """A --format template that cannot be applied (a client-side error)."""


_ACTION = re.compile(r"\{\{-?\s*(.*?)\s*-?\}\}")
_ARG = re.compile(r'"(?:[^"\\]|\\.)*"|\S+')


def _lookup(obj: Any, path: str) -> Any:
    if path == ".":
        return obj
    if not path.startswith("."):
        raise TemplateError(f"template: {path!r} is not a field (write .{path})")
    cur = obj
    for part in path[1:].split("."):
        if isinstance(cur, Mapping):
            if part in cur:
                cur = cur[part]
                continue
            lowered = {str(k).lower(): v for k, v in cur.items()}
            if part.lower() in lowered:
                cur = lowered[part.lower()]
                continue
            raise TemplateError(f"template: can't evaluate field {part} "
                                  f"(known: {', '.join(sorted(map(str, cur))) or 'none'})")
        raise TemplateError(f"template: can't evaluate field {part} in a "
                              f"{type(cur).__name__}")
    return cur


def _text(value: Any) -> str:
    if value is None:
        return "<no value>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Mapping):
        return "map[" + " ".join(f"{k}:{_text(v)}" for k, v in sorted(value.items())) + "]"
    if isinstance(value, list):
        return "[" + " ".join(_text(v) for v in value) + "]"
    return str(value)


def _arg(token: str, obj: Any) -> Any:
    if token.startswith('"'):
        return json.loads(token)
    return _lookup(obj, token)


_FUNCTIONS = ("index", "join", "json", "len", "lower", "title", "upper")


def _action(expr: str, obj: Any) -> str:
    parts = _ARG.findall(expr)
    if not parts:
        raise TemplateError("template: empty action {{}}")
    fn, args = parts[0], parts[1:]
    if fn.startswith(".") and not args:
        return _text(_lookup(obj, fn))
    if fn not in _FUNCTIONS:
        raise TemplateError(f"template: {{{{{expr}}}}}: {fn!r} is not a function "
                              f"({', '.join(sorted(_FUNCTIONS))}); a field is written .{fn}")
    values = [_arg(a, obj) for a in args]
    if fn == "json" and len(values) == 1:
        return json.dumps(values[0])
    if fn in ("upper", "lower", "title") and len(values) == 1:
        text = _text(values[0])
        return text.upper() if fn == "upper" else text.lower() if fn == "lower" \
            else text.title()
    if fn == "index" and len(values) >= 2:
        cur = values[0]
        for key in values[1:]:
            try:
                cur = cur[key]
            except (KeyError, IndexError, TypeError):
                return "<no value>"
        return _text(cur)
    if fn == "join" and len(values) == 2:
        return str(values[1]).join(_text(v) for v in (values[0] or []))
    if fn == "len" and len(values) == 1:
        return str(len(values[0] or []))
    raise TemplateError(f"template: unsupported action {{{{{expr}}}}}")


def render(template: str, obj: Any) -> str:
    """One object through a Go-template style format string."""
    template = template.replace("\\t", "\t").replace("\\n", "\n")
    return _ACTION.sub(lambda m: _action(m.group(1), obj), template)


def _header_of(template: str) -> str:
    """`table {{.ID}}\\t{{.Size}}` -> the column names, upper case and spaced as docker."""
    def name(m: re.Match[str]) -> str:
        parts = _ARG.findall(m.group(1))
        field = next((p for p in parts if p.startswith(".")), parts[0] if parts else "")
        label = field.lstrip(".").split(".")[-1] or "VALUE"
        return _HEADERS.get(label, re.sub(r"(?<=[a-z])(?=[A-Z])", " ", label).upper())

    return _ACTION.sub(name, template.replace("\\t", "\t").replace("\\n", "\n"))


_HEADERS = {"ID": "ID", "CreatedSince": "CREATED", "RunningFor": "CREATED",
            "Names": "NAMES", "Repository": "REPOSITORY", "CreatedAt": "CREATED AT"}


def align(lines: Sequence[Sequence[str]], gap: int = 3) -> list[str]:
    """Columns padded to their widest cell, as docker's tabwriter does."""
    if not lines:
        return []
    width = max(len(row) for row in lines)
    widths = [0] * width
    for row in lines:
        for i, cell in enumerate(row[:-1] if len(row) == width else row):
            widths[i] = max(widths[i], len(cell))
    out = []
    for row in lines:
        cells = [c.ljust(widths[i]) if i < len(row) - 1 else c for i, c in enumerate(row)]
        out.append((" " * gap).join(cells).rstrip())
    return out


def format_rows(rows: Iterable[Mapping[str, Any]], columns: Sequence[tuple[str, str]],
                fmt: str | None = None, quiet: bool = False, quiet_field: str = "ID"
                ) -> list[str]:
    """The lines a list command prints: a table (default), -q ids, `json` (one object a
    line) or a template ("table ..." adds a header and aligns the tab-separated cells)."""
    rows = list(rows)
    if quiet:
        return [str(r[quiet_field]) for r in rows]
    if fmt == "json":
        return [json.dumps(dict(r), separators=(",", ":")) for r in rows]
    if fmt and fmt != "table":
        if fmt.startswith("table"):
            body = fmt[len("table"):].strip()
            cells = [_header_of(body).split("\t")]
            cells += [render(body, r).split("\t") for r in rows]
            return align(cells)
        return [render(fmt, r) for r in rows]
    cells = [[h for h, _ in columns]]
    cells += [[_text(r.get(f, "")) for _, f in columns] for r in rows]
    return align(cells)


def print_rows(rows: Iterable[Mapping[str, Any]], columns: Sequence[tuple[str, str]],
               fmt: str | None = None, quiet: bool = False, quiet_field: str = "ID",
               out: TextIO | None = None) -> None:
    stream = out or sys.stdout
    for line in format_rows(rows, columns, fmt, quiet, quiet_field):
        stream.write(line + "\n")


def print_object(obj: Any, fmt: str | None, out: TextIO | None = None) -> None:
    """One object (inspect, version, info): indented JSON by default or with `json`, else
    the template."""
    stream = out or sys.stdout
    if not fmt or fmt == "json":
        stream.write(json.dumps(obj, indent=4) + "\n")
    else:
        stream.write(render(fmt, obj) + "\n")


# -- docker's human units ---------------------------------------------------------------------


def human_size(n: float) -> str:
    """Decimal units with 3 significant digits, as docker's go-units HumanSize: 1.5MB."""
    units = ["B", "kB", "MB", "GB", "TB", "PB"]
    i = 0
    value = float(n)
    while value >= 1000 and i < len(units) - 1:
        value /= 1000
        i += 1
    text = f"{value:.3g}"
    if "e" in text:
        text = f"{value:.0f}"
    return f"{text}{units[i]}"


def human_duration(seconds: float) -> str:
    """go-units HumanDuration: "Less than a second", "5 seconds", "About a minute",
    "3 hours", "2 weeks", "3 months", "2 years"."""
    s = int(seconds)
    if s < 1:
        return "Less than a second"
    if s == 1:
        return "1 second"
    if s < 60:
        return f"{s} seconds"
    m = s // 60
    if m == 1:
        return "About a minute"
    if m < 60:
        return f"{m} minutes"
    h = round(s / 3600)
    if h == 1:
        return "About an hour"
    if h < 48:
        return f"{h} hours"
    if h < 24 * 7 * 2:
        return f"{h // 24} days"
    if h < 24 * 30 * 2:
        return f"{h // 24 // 7} weeks"
    if h < 24 * 365 * 2:
        return f"{h // 24 // 30} months"
    return f"{h // 24 // 365} years"


def since(ts: float, now: float | None = None) -> str:
    """"5 minutes ago" for a Unix time (docker's CreatedSince; 0 is 1970, as docker shows
    it: images built reproducibly carry that date)."""
    return human_duration((now if now is not None else time.time()) - ts) + " ago"


def short_id(image_or_container_id: str) -> str:
    """The 12 hex digits docker shows: sha256:abcd... -> abcd..."""
    return image_or_container_id.split(":", 1)[-1][:12]


def iso_time(ts: float) -> str:
    """docker's CreatedAt: 2024-01-02 03:04:05 +0000 UTC."""
    return time.strftime("%Y-%m-%d %H:%M:%S +0000 UTC", time.gmtime(ts))


__all__ = ["TemplateError", "align", "format_rows", "human_duration", "human_size", "iso_time",
           "print_object", "print_rows", "render", "short_id", "since"]
