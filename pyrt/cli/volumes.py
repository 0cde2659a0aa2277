"""pyrt volume create | ls | inspect | rm | prune, as docker's volume commands."""

from __future__ import annotations

import sys

from pyrt.cli import CLIError, client, inspect_each
from pyrt.cli.output import human_size, print_rows
from pyrt.cli.system import parse_filters


def _pairs(items: list[str] | None, what: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items or []:
        key, eq, value = item.partition("=")
        if not key or (what == "opt" and not eq):
            raise CLIError(f"invalid {what} {item!r}: expected key=value", 125)
        out[key] = value
    return out


def create_command(name: str | None, driver: str, opts: list[str] | None,
                   labels: list[str] | None) -> None:
    driver_opts = _pairs(opts, "opt")
    out = client().create_volume(name, driver, driver_opts or None, _pairs(labels, "label"))
    sys.stdout.write(out["Name"] + "\n")


def ls_command(quiet: bool, filters: list[str] | None, fmt: str | None) -> None:
    rows = client().volumes(parse_filters(filters))
    print_rows(rows, [("DRIVER", "Driver"), ("VOLUME NAME", "Name")], fmt, quiet,
               quiet_field="Name")


def inspect_command(names: list[str], fmt: str | None) -> int:
    return inspect_each(client().inspect_volume, names, fmt)


def rm_command(names: list[str], force: bool) -> int:
    from pyrt.cli.containers import each

    c = client()
    return each(names, lambda n: c.remove_volume(n, force))


def prune_command(all_: bool, force: bool, filters: list[str] | None) -> None:
    if not force:
        if not sys.stdin.isatty():
            raise CLIError("volume prune: pass -f (--force) to prune without asking", 1)
        what = "all" if all_ else "all anonymous"
        answer = input(f"WARNING! This will remove {what} local volumes not used by at least "
                       "one container.\nAre you sure you want to continue? [y/N] ")
        if answer.lower() != "y":
            return
    flt = parse_filters(filters)
    if all_:
        flt["all"] = ["true"]
    out = client().prune_volumes(flt)
    deleted = out.get("VolumesDeleted") or []
    if deleted:
        sys.stdout.write("Deleted Volumes:\n" + "".join(f"{n}\n" for n in deleted) + "\n")
    sys.stdout.write(f"Total reclaimed space: {human_size(out.get('SpaceReclaimed', 0))}\n")


__all__ = ["create_command", "inspect_command", "ls_command", "prune_command", "rm_command"]
