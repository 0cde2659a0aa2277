"""pyrt.cli output and parsing, without a daemon: Go-template style formats, tables, -q,
json lines, docker's human units, pull progress display, create bodies from run flags,
filters, detach keys, the hijacked-stream pump (demultiplexing, detach, stdin EOF) and
the lean import of `pyrt version`."""

from __future__ import annotations

import io
import os
import re
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from pyrt.cli import CLIError
from pyrt.cli.containers import _parse_detach_keys, build_config, parse_bytes, stream_io
from pyrt.cli.images import image_rows, progress_bar, show_progress, split_tag
from pyrt.cli.output import (
    align,
    format_rows,
    human_duration,
    human_size,
    render,
    short_id,
    since,
)
from pyrt.cli.system import parse_filters
from pyrt.errors import InvalidArgument


def _pythonpath() -> str:
    """The pyrt this test imports (the source tree, or the installed package in CI)."""
    import pyrt

    return str(Path(pyrt.__file__).resolve().parent.parent)

ROWS = [{"ID": "abc", "Repository": "busybox", "Tag": "latest", "Size": "4.26MB",
         "Labels": {"a": "1"}, "Names": ["x", "y"]},
        {"ID": "defdef", "Repository": "alpine", "Tag": "3", "Size": "7MB",
         "Labels": {}, "Names": []}]
COLS = [("REPOSITORY", "Repository"), ("TAG", "Tag"), ("IMAGE ID", "ID")]


def test_render_fields_functions_and_escapes() -> None:
    obj = {"Id": "x1", "State": {"Status": "running", "Pid": 7}, "Env": ["A=1", "B=2"],
           "Labels": {"k": "v"}, "Tty": False, "Nothing": None}
    assert render("{{.Id}}", obj) == "x1"
    assert render("{{ .State.Status }}/{{.State.Pid}}", obj) == "running/7"
    assert render("{{.state.status}}", obj) == "running"  # as Go's case-folded lookups
    assert render("{{json .State}}", obj) == '{"Status": "running", "Pid": 7}'
    assert render("{{json .}}", {"a": 1}) == '{"a": 1}'
    assert render("{{upper .Id}} {{lower .State.Status}}", obj) == "X1 running"
    assert render('{{index .Labels "k"}} {{index .Labels "no"}}', obj) == "v <no value>"
    assert render('{{join .Env ","}} {{len .Env}}', obj) == "A=1,B=2 2"
    assert render("{{.Tty}} {{.Nothing}}", obj) == "false <no value>"
    assert render("{{.Env}} {{.Labels}}", obj) == "[A=1 B=2] map[k:v]"
    assert render("a\\tb\\nc", obj) == "a\tb\nc"
    assert render("no actions", obj) == "no actions"


def test_render_errors_name_the_field() -> None:
    with pytest.raises(InvalidArgument, match="can't evaluate field Nope"):
        render("{{.Nope}}", {"Id": 1})
    with pytest.raises(InvalidArgument, match="known: Id"):
        render("{{.Nope}}", {"Id": 1})
    with pytest.raises(InvalidArgument, match="a field is written .Id"):
        render("{{Id}}", {"Id": 1})
    with pytest.raises(InvalidArgument, match="'printf' is not a function"):
        render("{{printf .Id}}", {"Id": 1})
    with pytest.raises(InvalidArgument, match="unsupported action"):
        render("{{json .Id .Id}}", {"Id": 1})
    with pytest.raises(InvalidArgument, match="empty action"):
        render("{{ }}", {"Id": 1})
    with pytest.raises(InvalidArgument, match="in a str"):
        render("{{.Id.X}}", {"Id": "s"})


def test_table_quiet_json_and_templates() -> None:
    assert format_rows(ROWS, COLS) == [
        "REPOSITORY   TAG      IMAGE ID",
        "busybox      latest   abc",
        "alpine       3        defdef",
    ]
    assert format_rows(ROWS, COLS, fmt="table") == format_rows(ROWS, COLS)
    assert format_rows(ROWS, COLS, quiet=True) == ["abc", "defdef"]
    assert format_rows(ROWS, COLS, quiet=True, quiet_field="Tag") == ["latest", "3"]
    lines = format_rows(ROWS, COLS, fmt="json")
    assert lines[0].startswith('{"ID":"abc","Repository":"busybox"')
    assert format_rows(ROWS, COLS, fmt="{{.Repository}}:{{.Tag}}") == ["busybox:latest",
                                                                      "alpine:3"]
    assert format_rows(ROWS, COLS, fmt="table {{.ID}}\\t{{.Repository}}\\t{{.Size}}") == [
        "ID       REPOSITORY   SIZE",
        "abc      busybox      4.26MB",
        "defdef   alpine       7MB",
    ]
    assert format_rows([], COLS) == ["REPOSITORY   TAG   IMAGE ID"]
    assert format_rows([], COLS, quiet=True) == []


def test_table_headers_follow_docker() -> None:
    rows = [{"CreatedSince": "2 days ago", "RunningFor": "1 hour", "CreatedAt": "t",
             "ID": "i", "Names": "n", "MemUsage": "m"}]
    out = format_rows(rows, [], fmt="table {{.CreatedSince}}\\t{{.RunningFor}}\\t{{.ID}}"
                      "\\t{{.Names}}\\t{{.MemUsage}}\\t{{.CreatedAt}}")
    assert re.split(r"\s{2,}", out[0]) == ["CREATED", "CREATED", "ID", "NAMES", "MEM USAGE",
                                   "CREATED AT"]


def test_align_pads_all_but_the_last_column() -> None:
    assert align([["a", "bbb", "c"], ["dddd", "e", "ffff"]]) == [
        "a      bbb   c", "dddd   e     ffff"]
    assert align([]) == []


def test_human_units() -> None:
    assert human_size(0) == "0B"
    assert human_size(999) == "999B"
    assert human_size(1000) == "1kB"
    assert human_size(4_261_000) == "4.26MB"
    assert human_size(12_345_678_901) == "12.3GB"
    assert human_size(686_000) == "686kB"
    assert human_duration(0.2) == "Less than a second"
    assert human_duration(1) == "1 second"
    assert human_duration(45) == "45 seconds"
    assert human_duration(61) == "About a minute"
    assert human_duration(600) == "10 minutes"
    assert human_duration(3600) == "About an hour"
    assert human_duration(5 * 3600) == "5 hours"
    assert human_duration(3 * 86400) == "3 days"
    assert human_duration(20 * 86400) == "2 weeks"
    assert human_duration(90 * 86400) == "3 months"
    assert human_duration(3 * 365 * 86400) == "3 years"
    assert since(1000.0, now=1010.0) == "10 seconds ago"
    assert since(0, now=3 * 365 * 86400 + 5) == "3 years ago"
    assert short_id("sha256:" + "ab" * 32) == "ab" * 6
    assert short_id("cd" * 32) == "cd" * 6


def test_image_rows_one_per_tag_with_digests() -> None:
    img = {"Id": "sha256:" + "1" * 64, "RepoTags": ["a:1", "b:2"],
           "RepoDigests": ["a@sha256:" + "9" * 64], "Created": 0, "Size": 1500}
    rows = image_rows([img, {"Id": "sha256:" + "2" * 64, "RepoTags": [], "Size": 1}])
    assert [(r["Repository"], r["Tag"], r["Digest"][:9]) for r in rows] == [
        ("a", "1", "sha256:99"), ("b", "2", "<none>"), ("<none>", "<none>", "<none>")]
    assert rows[0]["ID"] == "1" * 12 and rows[0]["Size"] == "1.5kB"


def test_split_tag() -> None:
    assert split_tag("busybox") == ("busybox", "latest")
    assert split_tag("busybox:1.36") == ("busybox", "1.36")
    assert split_tag("127.0.0.1:5000/a/b") == ("127.0.0.1:5000/a/b", "latest")
    assert split_tag("127.0.0.1:5000/a/b:v1") == ("127.0.0.1:5000/a/b", "v1")
    assert split_tag("a@sha256:" + "0" * 64) == ("a@sha256:" + "0" * 64, "")


def test_pull_progress_on_a_pipe_and_on_a_terminal() -> None:
    msgs = [
        {"status": "Pulling from library/x", "id": "latest"},
        {"status": "Pulling fs layer", "progressDetail": {}, "id": "aaa"},
        {"status": "Pulling fs layer", "progressDetail": {}, "id": "bbb"},
        {"status": "Downloading", "progressDetail": {"current": 50, "total": 100}, "id": "aaa"},
        {"status": "Download complete", "progressDetail": {}, "id": "aaa"},
        {"status": "Pull complete", "progressDetail": {}, "id": "aaa"},
        {"status": "Pull complete", "progressDetail": {}, "id": "bbb"},
        {"status": "Digest: sha256:00"},
        {"progressDetail": {}, "aux": {"Tag": "latest"}},
        {"status": "Status: Downloaded newer image for x:latest"},
    ]
    out = io.StringIO()
    show_progress(msgs, out=out, tty=False)
    assert out.getvalue().splitlines() == [
        "latest: Pulling from library/x", "aaa: Pulling fs layer", "bbb: Pulling fs layer",
        "aaa: Download complete", "aaa: Pull complete", "bbb: Pull complete",
        "Digest: sha256:00", "Status: Downloaded newer image for x:latest"]
    tty = io.StringIO()
    show_progress(msgs, out=tty, tty=True)
    text = tty.getvalue()
    # aaa is two lines above the cursor when it is redrawn; the bar shows the bytes
    assert "\x1b[2A\r\x1b[2Kaaa: Downloading [" in text and "50B/100B" in text
    assert "\x1b[2A\r\x1b[2Kaaa: Pull complete" in text
    assert "\x1b[1A\r\x1b[2Kbbb: Pull complete" in text
    assert progress_bar(50, 100, width=10) == "[=====>    ]  50B/100B"
    assert progress_bar(100, 100, width=4) == "[====]  100B/100B"
    assert progress_bar(7, -1) == "7B"


def test_build_config_from_run_flags(monkeypatch: pytest.MonkeyPatch,
                                     tmp_path: Path) -> None:
    monkeypatch.setenv("FROM_CLIENT", "yes")
    monkeypatch.delenv("UNSET_VAR", raising=False)
    env_file = tmp_path / "env"
    env_file.write_text("# comment\nFILE=1\n\n")
    cfg = build_config("img", ["sh", "-c", "x"], env=["A=1", "FROM_CLIENT", "UNSET_VAR"],
                       env_file=[str(env_file)], workdir="/w", user="1:2", entrypoint="",
                       tty=True, interactive=True, labels=["k=v", "flag"], hostname="h",
                       rm=True, restart="on-failure:3", volumes=["/a:/b:ro"], memory="64m")
    assert cfg["Image"] == "img" and cfg["Cmd"] == ["sh", "-c", "x"]
    assert cfg["Env"] == ["FILE=1", "A=1", "FROM_CLIENT=yes"]
    assert cfg["WorkingDir"] == "/w" and cfg["User"] == "1:2" and cfg["Entrypoint"] == [""]
    assert cfg["Tty"] and cfg["OpenStdin"] and cfg["AttachStdin"] and cfg["StdinOnce"]
    assert cfg["Labels"] == {"k": "v", "flag": ""} and cfg["Hostname"] == "h"
    assert cfg["HostConfig"] == {"AutoRemove": True, "Binds": ["/a:/b:ro"],
                                 "Memory": 64 << 20,
                                 "RestartPolicy": {"Name": "on-failure",
                                                   "MaximumRetryCount": 3}}
    plain = build_config("img", [])
    assert plain["Cmd"] is None and "Entrypoint" not in plain and not plain["OpenStdin"]
    with pytest.raises(CLIError, match="restart policy 'sometimes'"):
        build_config("img", [], restart="sometimes")
    with pytest.raises(CLIError, match=str(tmp_path / "missing")):
        build_config("img", [], env_file=[str(tmp_path / "missing")])
    assert parse_bytes("1g") == 1 << 30 and parse_bytes("512") == 512
    assert parse_bytes("1.5k") == 1536 and parse_bytes("10mb") == 10 << 20
    with pytest.raises(CLIError, match="invalid size 'lots'"):
        parse_bytes("lots")


def test_filters_and_detach_keys() -> None:
    assert parse_filters(["name=a", "name=b", "status=exited"]) == {
        "name": ["a", "b"], "status": ["exited"]}
    assert parse_filters(["label=a=b"]) == {"label": ["a=b"]}
    assert parse_filters(None) == {}
    with pytest.raises(CLIError, match="'novalue': expected key=value"):
        parse_filters(["novalue"])
    assert _parse_detach_keys(None) == b"\x10\x11"
    assert _parse_detach_keys("ctrl-a,x") == b"\x01x"
    with pytest.raises(CLIError, match="'ctrl-'"):
        _parse_detach_keys("ctrl-")


def _frame(stream: int, data: bytes) -> bytes:
    return bytes([stream, 0, 0, 0]) + len(data).to_bytes(4, "big") + data


def _pump(data_from_daemon: list[bytes], stdin: bytes | None, *, mux: bool, tty: bool,
          keep_open: bool = False) -> tuple[bool, bytes, bytes, bytes]:
    """Run stream_io against a socketpair; returns (detached, stdout, stderr, what the
    'daemon' received)."""
    ours, theirs = socket.socketpair()
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    in_r, in_w = os.pipe()
    got = bytearray()
    sent = threading.Event()

    def daemon() -> None:
        for chunk in data_from_daemon:
            theirs.sendall(chunk)
        sent.set()
        theirs.settimeout(5)
        try:
            while True:
                b = theirs.recv(4096)
                if not b:
                    break
                got.extend(b)
                if keep_open:
                    continue
        except OSError:
            pass
        theirs.close()

    t = threading.Thread(target=daemon)
    t.start()
    assert sent.wait(5)  # the output is in the socket before any stdin (detach) is typed
    if stdin is not None:
        os.write(in_w, stdin)
        if not keep_open:
            os.close(in_w)
    detached = stream_io(ours, b"", mux, stdin=stdin is not None, tty=tty,
                         detach_keys=b"\x10\x11", out_fd=out_w, err_fd=err_w, in_fd=in_r)
    ours.close()
    t.join()
    for fd in (out_w, err_w, in_r):
        os.close(fd)
    if stdin is not None and keep_open:
        os.close(in_w)
    outs = []
    for fd in (out_r, err_r):
        data = b""
        while chunk := os.read(fd, 65536):
            data += chunk
        os.close(fd)
        outs.append(data)
    return detached, outs[0], outs[1], bytes(got)


def test_stream_io_demultiplexes_and_half_closes() -> None:
    frames = _frame(1, b"out1 ") + _frame(2, b"err") + _frame(1, b"out2")
    # split across recv boundaries, in the middle of a header and of a payload
    detached, out, err, got = _pump([frames[:5], frames[5:14], frames[14:]], b"input",
                                    mux=True, tty=False)
    assert (detached, out, err, got) == (False, b"out1 out2", b"err", b"input")


def test_stream_io_raw_and_detach_keys() -> None:
    detached, out, _, got = _pump([b"raw output"], b"ab\x10c\x10\x11zz", mux=False, tty=True,
                                  keep_open=True)
    # a ctrl-p not followed by ctrl-q is passed on; the sequence itself is not
    assert detached and out == b"raw output" and got == b"ab\x10c"


def _run_cli_code(code: str) -> subprocess.CompletedProcess[str]:
    """`code` in a fresh interpreter with this tree's pyrt, no daemon autostart."""
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=dict(os.environ, PYTHONPATH=_pythonpath(), PYRT_NO_AUTOSTART="1"),
                          timeout=60, check=False)


def test_version_and_run_do_not_import_typer() -> None:
    """`pyrt version` and `pyrt run` are the fast path: no typer (nor rich, pydantic)."""
    code = ("import sys; from pyrt.cli.app import main; main(['-H', 'unix:///nonexistent/s',"
            " 'version', '--format', '{{.Client.ApiVersion}}']);"
            "main(['-H', 'unix:///nonexistent/s', 'run', '--rm', '-it', 'img', 'sh']);"
            "print('typer' in sys.modules, 'rich' in sys.modules)")
    p = _run_cli_code(code)
    assert p.stdout.splitlines()[-1] == "False False", p
    assert p.stdout.splitlines()[0] == "1.44"
    assert "Cannot connect to the pyrt daemon at unix:///nonexistent/s" in p.stderr
    # nor anything else heavy: `pyrt run`, `ps`, `version` import only these of pyrt.cli
    code = ("import sys; from pyrt.cli.app import main; import pyrt.cli.containers; "
            "main(['-H', 'unix:///nonexistent/s', 'ps', '-a']); "
            "print(sorted(m for m in ('typer', 'pydantic', 'rich', 'pyroute2', 'http.client',"
            " 'email', 'ssl', 'argparse', 'typing', 'urllib.parse', 'platform', 'shutil')"
            " if m in sys.modules))")
    p = _run_cli_code(code)
    assert p.stdout.splitlines()[-1] == "[]", p
    assert "Cannot connect to the pyrt daemon at unix:///nonexistent/s" in p.stderr


def test_invoked_words_and_selective_registration() -> None:
    from pyrt.cli.app import build_app, invoked

    assert invoked(["-H", "unix:///x", "ps", "-a"]) == ("ps", None)
    assert invoked(["--host=unix:///x", "image", "ls", "-q"]) == ("image", "ls")
    assert invoked(["image", "--help"]) == ("image", "--help")
    assert invoked(["--help"]) == (None, None)
    assert invoked([]) == (None, None)
    import typer

    def names(args: list[str] | None) -> set[str]:
        group = typer.main.get_command(build_app(args))
        return set(group.commands)  # type: ignore[attr-defined]

    everything = names(None)
    assert {"run", "ps", "images", "pull", "system", "image", "container", "daemon",
            "version", "inspect", "exec", "cp"} <= everything
    assert names(["ps", "-a"]) == {"ps"}
    assert names(["image", "ls"]) == {"image"}
    sub = typer.main.get_command(build_app(["image", "ls"])).commands["image"]  # type: ignore[attr-defined]
    assert set(sub.commands) == {"ls"}
    sub = typer.main.get_command(build_app(["image"])).commands["image"]  # type: ignore[attr-defined]
    assert {"ls", "pull", "rm", "inspect", "prune"} <= set(sub.commands)
    assert names(["--help"]) == everything


def test_shell_completion_is_typers() -> None:
    env = dict(os.environ, PYTHONPATH=_pythonpath(), _PYRT_COMPLETE="complete_bash",
               COMP_WORDS="pyrt image i", COMP_CWORD="2")
    p = subprocess.run([sys.executable, "-m", "pyrt.cli.app"], capture_output=True, text=True,
                       env=env, timeout=60, check=False)
    assert p.returncode == 0 and p.stdout.split() == ["import", "inspect"], p
    env.update(COMP_WORDS="pyrt pu", COMP_CWORD="1")
    p = subprocess.run([sys.executable, "-m", "pyrt.cli.app"], capture_output=True, text=True,
                       env=env, timeout=60, check=False)
    assert p.stdout.split() == ["pull", "push"], p


def test_run_fast_parser() -> None:
    from pyrt.cli.app import parse_run

    got = parse_run(["-it", "--rm", "-e", "A=1", "-eB=2", "--name=x", "-h", "hn", "img",
                     "sh", "-c", "--rm"])
    assert got is not None
    assert (got["interactive"], got["tty"], got["rm"], got["env"], got["name"],
            got["hostname"]) == (True, True, True, ["A=1", "B=2"], "x", "hn")
    assert (got["image"], got["command"]) == ("img", ["sh", "-c", "--rm"])
    assert parse_run(["img", "-c", "x"])["command"] == ["-c", "x"]  # type: ignore[index]
    assert parse_run(["img", "--help"])["command"] == ["--help"]  # type: ignore[index]
    assert parse_run(["--help"]) is None and parse_run([]) is None
    assert parse_run(["-d", "--help", "img"]) is None
    with pytest.raises(CLIError, match="unrecognized arguments: --bogus") as e:
        parse_run(["--bogus", "img"])
    assert e.value.code == 125
    with pytest.raises(CLIError, match="required: image"):
        parse_run(["--rm"])
    with pytest.raises(CLIError, match="--name: expected one argument"):
        parse_run(["--name"])
    # combined short flags, a value attached to or after a short option, `--`
    got = parse_run(["-dit", "-w/tmp", "-de", "X=1", "--env=Y=2", "--", "img", "-x"])
    assert got is not None
    assert (got["detach"], got["interactive"], got["tty"], got["workdir"], got["env"],
            got["image"], got["command"]) == (True, True, True, "/tmp", ["X=1", "Y=2"],
                                              "img", ["-x"])
    assert got["name"] is None and got["label"] is None and got["quiet"] is False
    with pytest.raises(CLIError, match="unrecognized arguments: -iz"):
        parse_run(["-iz", "img"])
    with pytest.raises(CLIError, match="ignored explicit argument"):
        parse_run(["--rm=yes", "img"])


def test_ps_fast_parser() -> None:
    from pyrt.cli.app import parse_ps

    got = parse_ps(["-aq", "-f", "name=x", "--filter=status=exited", "-n2", "--format",
                    "{{.ID}}"])
    assert got == {"all_": True, "quiet": True, "filt": ["name=x", "status=exited"],
                   "fmt": "{{.ID}}", "no_trunc": False, "last": 2, "latest": False,
                   "size": False}
    assert parse_ps(["--help"]) is None
    with pytest.raises(CLIError, match="invalid int value: 'x'"):
        parse_ps(["-n", "x"])
    with pytest.raises(CLIError, match="unexpected argument 'extra'"):
        parse_ps(["-a", "extra"])


def test_ps_fast_parser_and_typer_take_the_same_options() -> None:
    from pyrt.cli.app import PS_OPTIONS, build_app

    ps = typer_main_command(build_app(["ps"]), "ps")
    assert {p.name: tuple(p.opts) for p in ps.params} == \
        {dest: flags for dest, flags, _ in PS_OPTIONS}
    kinds = {p.name: ("flag" if p.is_flag else "list" if p.multiple else
                      "int" if p.type_descriptor.annotation is int else "str") for p in ps.params}
    assert kinds == {dest: kind for dest, _, kind in PS_OPTIONS}


def typer_main_command(app: object, name: str) -> Any:
    import typer

    return typer.main.get_command(app).commands[name]  # type: ignore[arg-type, attr-defined]


def test_run_fast_parser_and_typer_take_the_same_options() -> None:
    import typer

    from pyrt.cli.app import RUN_OPTIONS, build_app

    run = typer.main.get_command(build_app(["run"])).commands["run"]  # type: ignore[attr-defined]
    typer_opts = {p.name: tuple(p.opts) for p in run.params if p.opts[0].startswith("-")}
    assert typer_opts == {dest: flags for dest, flags, _ in RUN_OPTIONS}
    kinds = {p.name: ("flag" if p.is_flag else "list" if p.multiple else "str")
             for p in run.params if p.name in typer_opts}
    assert kinds == {dest: kind for dest, _, kind in RUN_OPTIONS}
