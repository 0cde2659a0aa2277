"""Image commands: pull, images, rmi, tag, history, save, load, import, push, image
inspect, login, logout."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import IO, Any

from pyrt.cli import client, fail, write_archive
from pyrt.cli.output import (
    human_size,
    iso_time,
    print_rows,
    short_id,
    since,
)
from pyrt.cli.system import parse_filters

_BYTES = ("Downloading", "Extracting", "Pushing")


def progress_bar(current: int, total: int, width: int = 50) -> str:
    """docker's bar: [=====>      ]  1.2MB/3.4MB (no bar when the total is unknown)."""
    if total <= 0:
        return human_size(current)
    done = min(width, current * width // total)
    bar = "=" * done + (">" if done < width else "") + " " * max(0, width - done - 1)
    return f"[{bar}]  {human_size(current)}/{human_size(total)}"


def show_progress(msgs: Iterable[dict[str, Any]], out: IO[str] | None = None,
                  tty: bool | None = None) -> None:
    """Print a pull/push JSON stream as docker does: one line per layer, redrawn in place
    with a progress bar on a terminal; on a pipe, each state change once (no byte
    counts). A "Pulling from" line reads "<tag>: Pulling from <repo>"."""
    stream = out or sys.stdout
    if tty is None:
        tty = stream.isatty()
    order: list[str] = []
    for m in msgs:
        status = str(m.get("status", ""))
        ident = m.get("id")
        if not ident:
            if not status:  # an "aux" message (the pushed digest): nothing to show
                continue
            stream.write(status + "\n")
            stream.flush()
            continue
        if status.startswith("Pulling from"):
            stream.write(f"{ident}: {status}\n")
            continue
        detail = m.get("progressDetail") or {}
        is_bytes = status in _BYTES and "current" in detail
        if not tty:
            if not is_bytes:
                stream.write(f"{ident}: {status}\n")
                stream.flush()
            continue
        text = f"{ident}: {status}"
        if is_bytes:
            text += " " + progress_bar(int(detail["current"]), int(detail.get("total", -1)))
        if ident not in order:
            order.append(ident)
            stream.write(text + "\n")
        else:
            up = len(order) - order.index(ident)
            stream.write(f"\x1b[{up}A\r\x1b[2K{text}\r\x1b[{up}B")
        stream.flush()


def split_tag(name: str) -> tuple[str, str]:
    """busybox -> (busybox, latest); host:5000/a:1 -> (host:5000/a, 1); a@sha256:x kept."""
    if "@" in name:
        return name, ""
    repo, _, tag = name.rpartition(":")
    if repo and "/" not in tag:
        return repo, tag
    return name, "latest"


def pull_command(name: str, quiet: bool = False, platform: str | None = None,
                 all_tags: bool = False) -> None:
    repo, tag = split_tag(name)
    if all_tags:
        if tag != "latest" or name.endswith(":latest") or "@" in name:
            fail("tag can't be used with --all-tags/-a", 125)
        tag = ""  # a repository without a tag: the daemon pulls every tag
    msgs = client(timeout=None).pull(repo, tag=tag, platform=platform)
    if quiet:
        for _ in msgs:
            pass
    else:
        show_progress(msgs)
    sys.stdout.write(_full_name(repo, tag) + "\n")


def _full_name(repo: str, tag: str) -> str:
    from pyrt.oci.reference import parse_reference

    # no tag: a digest reference, or --all-tags's bare repository (docker prints it bare)
    return str(parse_reference(f"{repo}:{tag}" if tag else repo))


def image_rows(images: list[dict[str, Any]], show_digests: bool = False,
               all_images: bool = False) -> list[dict[str, Any]]:
    rows = []
    for img in images:
        tags = img.get("RepoTags") or []
        digests = img.get("RepoDigests") or []
        pairs = [t.rsplit(":", 1) for t in tags] or [["<none>", "<none>"]]
        for repo, tag in pairs:
            digest = next((d.split("@", 1)[1] for d in digests
                           if d.split("@", 1)[0] == repo), "<none>")
            rows.append({
                "ID": short_id(img["Id"]), "Repository": repo, "Tag": tag, "Digest": digest,
                "CreatedSince": since(img.get("Created", 0)),
                "CreatedAt": iso_time(img.get("Created", 0)),
                "Size": human_size(img.get("Size", 0)),
                "VirtualSize": human_size(img.get("VirtualSize", img.get("Size", 0))),
                "SharedSize": human_size(max(0, img.get("SharedSize", 0))),
                "UniqueSize": human_size(img.get("Size", 0)),
                "Containers": str(img.get("Containers", "N/A")),
            })
    return rows


def images_command(name: str | None, all_images: bool, quiet: bool, filters: list[str] | None,
                   fmt: str | None, digests: bool, no_trunc: bool) -> None:
    flt = parse_filters(filters)
    if name:
        flt.setdefault("reference", []).append(name)
    listed = client().images(all=all_images, filters=flt or None)
    rows = image_rows(listed)
    if no_trunc:
        for row, full in zip(rows, _ids_per_row(listed), strict=True):
            row["ID"] = full
    if quiet:
        seen: list[str] = []
        for r in rows:
            if r["ID"] not in seen:
                seen.append(r["ID"])
        sys.stdout.write("".join(i + "\n" for i in seen))
        return
    cols = [("REPOSITORY", "Repository"), ("TAG", "Tag")]
    if digests:
        cols.append(("DIGEST", "Digest"))
    cols += [("IMAGE ID", "ID"), ("CREATED", "CreatedSince"), ("SIZE", "Size")]
    print_rows(rows, cols, fmt)


def _ids_per_row(images: list[dict[str, Any]]) -> list[str]:
    out = []
    for img in images:
        out += [img["Id"]] * max(1, len(img.get("RepoTags") or []))
    return out


def rmi_command(names: list[str], force: bool, no_prune: bool) -> int:
    c = client()
    status = 0
    for n in names:
        try:
            for item in c.remove_image(n, force=force, noprune=no_prune):
                for k, v in item.items():
                    sys.stdout.write(f"{k}: {v}\n")
        except Exception as e:
            from pyrt.cli import report

            status = report(e) if status == 0 else status
    return status


def tag_command(source: str, target: str) -> None:
    repo, tag = split_tag(target)
    client().tag(source, repo, tag)


def history_command(name: str, quiet: bool, fmt: str | None, no_trunc: bool,
                    human: bool = True) -> None:
    items = client().history(name)
    rows = []
    for h in items:
        created_by = str(h.get("CreatedBy", ""))
        if not no_trunc and len(created_by) > 45:
            created_by = created_by[:44] + "…"
        hid = str(h.get("Id", "<missing>"))
        rows.append({"ID": hid if no_trunc or hid == "<missing>" else short_id(hid),
                     "CreatedSince": since(h.get("Created", 0)),
                     "CreatedAt": iso_time(h.get("Created", 0)),
                     "CreatedBy": created_by,
                     "Size": human_size(h.get("Size", 0)) if human else str(h.get("Size", 0)),
                     "Comment": str(h.get("Comment", ""))})
    print_rows(rows, [("IMAGE", "ID"), ("CREATED", "CreatedSince"),
                      ("CREATED BY", "CreatedBy"), ("SIZE", "Size"),
                      ("COMMENT", "Comment")], fmt, quiet)


def save_command(names: list[str], output: str | None) -> None:
    c = client(timeout=None)
    write_archive(output, lambda out: c.save(names, out))


def load_command(input_path: str | None, quiet: bool) -> None:
    c = client(timeout=None)
    if input_path:
        try:
            src: IO[bytes] = open(input_path, "rb")  # noqa: SIM115 - closed below
        except OSError as e:
            fail(f"open {input_path}: {e.strerror}", 1)
    else:
        if sys.stdin.isatty():
            fail("requested load from stdin, but stdin is empty", 1)
        src = sys.stdin.buffer
    try:
        for line in c.load(src, quiet=quiet):
            sys.stdout.write(line + "\n")
    finally:
        if input_path:
            src.close()


def import_command(source: str, reference: str | None, changes: list[str] | None,
                   message: str | None) -> None:
    repo, tag = split_tag(reference) if reference else ("", "")
    if source == "-":
        src: IO[bytes] = sys.stdin.buffer
    else:
        if "://" in source:
            fail(f"import {source}: only a file or - (stdin) can be imported", 125)
        try:
            src = open(source, "rb")  # noqa: SIM115 - closed below
        except OSError as e:
            fail(f"open {source}: {e.strerror}", 1)
    try:
        image_id = client(timeout=None).import_image(src, repo=repo, tag=tag,
                                                     changes=changes, message=message or "")
    finally:
        if source != "-":
            src.close()
    sys.stdout.write(image_id + "\n")


def push_command(name: str, quiet: bool) -> None:
    repo, tag = split_tag(name)
    msgs = client(timeout=None).push(repo, tag=tag)
    if quiet:
        for _ in msgs:
            pass
        sys.stdout.write(_full_name(repo, tag) + "\n")
        return
    show_progress(msgs)


def inspect_command(names: list[str], fmt: str | None) -> int:
    from pyrt.cli import inspect_each

    return inspect_each(client().inspect_image, names, fmt)


def login_command(server: str | None, username: str | None, password: str | None,
                  password_stdin: bool) -> None:
    """Client-side login: pyrtd has no POST /auth route, so the credentials are checked
    against the registry from here (pyrt.images.auth.login) and saved in
    ~/.docker/config.json, which pyrtd reads."""
    from pyrt.images.auth import login

    host = server or "https://index.docker.io/v1/"
    if password_stdin:
        if password:
            fail("--password and --password-stdin are mutually exclusive", 125)
        password = sys.stdin.read().rstrip("\r\n")
    if not username:
        if not sys.stdin.isatty():
            fail("Cannot perform an interactive login from a non TTY device", 1)
        username = input("Username: ").strip()
    if not password:
        if not sys.stdin.isatty() or password_stdin:
            fail("Cannot perform an interactive login from a non TTY device", 1)
        import getpass

        password = getpass.getpass("Password: ")
    if not username or not password:
        fail("Error: Username and password are required", 1)
    try:
        key = login(host, username, password)
    except Exception as e:
        fail(f"Error response from daemon: login to {host}: {e}", 1)
    sys.stdout.write(f"Login Succeeded (credentials saved for {key})\n")


def logout_command(server: str | None) -> None:
    from pyrt.images.auth import logout

    host = server or "https://index.docker.io/v1/"
    if logout(host):
        sys.stdout.write(f"Removing login credentials for {host}\n")
    else:
        sys.stdout.write(f"Not logged in to {host}\n")


__all__ = ["history_command", "image_rows", "images_command", "import_command",
           "inspect_command", "load_command", "login_command", "logout_command",
           "progress_bar", "pull_command", "push_command", "rmi_command", "save_command",
           "show_progress", "split_tag", "tag_command"]
