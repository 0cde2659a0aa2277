"""pyrt-runc's command line: parsing, signal names, Go-style flags, lean imports."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from pyrt.runtime import cli
from pyrt.runtime.cli import UsageError, main, parse_args, parse_signal
from pyrt.runtime.state import fast_state_text, oci_state


def parse(*argv: str) -> object:
    return parse_args(list(argv))


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("9", 9),
        ("KILL", signal.SIGKILL),
        ("SIGKILL", signal.SIGKILL),
        ("sigterm", signal.SIGTERM),
        ("term", signal.SIGTERM),
        ("SIGHUP", signal.SIGHUP),
        ("USR1", signal.SIGUSR1),
        ("RTMIN", signal.SIGRTMIN),
        ("RTMIN+2", signal.SIGRTMIN + 2),
        ("SIGRTMAX-1", signal.SIGRTMAX - 1),
    ],
)
def test_parse_signal(text: str, want: int) -> None:
    assert parse_signal(text) == int(want)


@pytest.mark.parametrize("text", ["", "0", "65", "-1", "SIGFOO", "NOPE", "RTMIN+99", "_X"])
def test_parse_signal_rejects(text: str) -> None:
    with pytest.raises(UsageError):
        parse_signal(text)


def test_containerd_create_flags() -> None:
    a = parse(
        "--root", "/run/containerd/runc/default", "--log", "/b/log.json", "--log-format",
        "json", "create", "--bundle", "/b", "--pid-file", "/b/init.pid",
        "--console-socket", "/tmp/c.sock", "cid",
    )  # fmt: skip
    assert a.root == "/run/containerd/runc/default"  # type: ignore[attr-defined]
    assert a.log == "/b/log.json"  # type: ignore[attr-defined]
    assert a.log_format == "json"  # type: ignore[attr-defined]
    assert a.command == "create"  # type: ignore[attr-defined]
    assert a.bundle == "/b"  # type: ignore[attr-defined]
    assert a.pid_file == "/b/init.pid"  # type: ignore[attr-defined]
    assert a.console_socket == "/tmp/c.sock"  # type: ignore[attr-defined]
    assert a.container_id == "cid"  # type: ignore[attr-defined]


def test_conmon_create_flags_and_go_spellings() -> None:
    a = parse(
        "--root=/run/runc", "--log-format=json", "--log=/x/oci-log", "create",
        "--bundle", "/b", "--pid-file", "/p", "--no-pivot", "--no-new-keyring",
        "--preserve-fds=2", "cid",
    )  # fmt: skip
    assert a.root == "/run/runc"  # type: ignore[attr-defined]
    assert a.no_pivot and a.no_new_keyring  # type: ignore[attr-defined]
    assert a.preserve_fds == 2  # type: ignore[attr-defined]
    # single-dash long flags and --bool=false, as Go's flag package allows
    b = parse("-root", "/r", "run", "-bundle", "/b", "--detach=false", "--no-pivot=true", "c")
    assert b.root == "/r"  # type: ignore[attr-defined]
    assert b.bundle == "/b"  # type: ignore[attr-defined]
    assert b.detach is False  # type: ignore[attr-defined]
    assert b.no_pivot is True  # type: ignore[attr-defined]


def test_kill_forms() -> None:
    a = parse("kill", "cid", "9")
    assert (a.container_id, a.signal, a.all) == ("cid", "9", False)  # type: ignore[attr-defined]
    b = parse("kill", "--all", "cid", "KILL")
    assert b.all is True  # type: ignore[attr-defined]
    c = parse("kill", "-a", "cid")
    assert c.all is True and c.signal == "SIGTERM"  # type: ignore[attr-defined]


def test_exec_trailing_args_kept_verbatim() -> None:
    a = parse("exec", "-t", "--env", "A=1", "-e", "B=2", "-u", "1000:1000", "cid",
              "sh", "-c", "ls -la", "--root", "x")  # fmt: skip
    assert a.tty  # type: ignore[attr-defined]
    assert a.env == ["A=1", "B=2"]  # type: ignore[attr-defined]
    assert a.args == ["sh", "-c", "ls -la", "--root", "x"]  # type: ignore[attr-defined]


def test_build_exec_process_from_flags() -> None:
    a = parse("exec", "--cwd", "/tmp", "-e", "PATH=/x", "-u", "7:8", "--cap", "net_admin",
              "--no-new-privs", "cid", "id")  # fmt: skip
    base = {
        "args": ["sh"],
        "env": ["PATH=/bin", "HOME=/root"],
        "cwd": "/",
        "user": {"uid": 0, "gid": 0},
        "capabilities": {"bounding": ["CAP_KILL"], "effective": ["CAP_KILL"]},
    }
    p = cli.build_exec_process(a, base)  # type: ignore[arg-type]
    assert p["args"] == ["id"]
    assert p["cwd"] == "/tmp"
    assert p["env"] == ["HOME=/root", "PATH=/x"]
    assert p["user"] == {"uid": 7, "gid": 8}
    assert "CAP_NET_ADMIN" in p["capabilities"]["bounding"]
    assert "CAP_KILL" in p["capabilities"]["effective"]
    assert p["noNewPrivileges"] is True
    assert p["terminal"] is False
    assert base["args"] == ["sh"]  # the container's process is not modified


def test_build_exec_process_from_file(tmp_path: Path) -> None:
    f = tmp_path / "p.json"
    f.write_text(json.dumps({"args": ["true"], "cwd": "/"}))
    p = cli.build_exec_process(parse("exec", "-p", str(f), "-t", "c"), {})  # type: ignore[arg-type]
    assert p == {"args": ["true"], "cwd": "/", "terminal": True}
    f.write_text("{not json")
    with pytest.raises(UsageError, match="invalid JSON"):
        cli.build_exec_process(parse("exec", "-p", str(f), "c"), {})  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="command is needed"):
        cli.build_exec_process(parse("exec", "c"), {})  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", ["x", "1:y", "-1"])
def test_parse_user_rejects(bad: str) -> None:
    with pytest.raises(UsageError, match="--user"):
        cli.parse_user(bad)


def test_update_resources_from_flags() -> None:
    a = parse("update", "--memory", "1048576", "--pids-limit", "10", "--cpuset-cpus", "0", "c")
    assert cli.resources_from_flags(a) == {  # type: ignore[arg-type]
        "memory": {"limit": 1048576},
        "cpu": {"cpus": "0"},
        "pids": {"limit": 10},
    }
    with pytest.raises(UsageError, match="nothing to update"):
        cli.resources_from_flags(parse("update", "c"))  # type: ignore[arg-type]


def test_version_and_errors(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["--version"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("pyrt-runc version 0.1.0\ncommit: ")
    assert "\nspec: 1.2.0" in out
    assert main(["-v"]) == 0
    capsys.readouterr()
    log = tmp_path / "log.json"
    code = main(["--log", str(log), "--log-format", "json", "--systemd-cgroup", "state", "x"])
    assert code == 1
    assert "--systemd-cgroup is not supported" in capsys.readouterr().err
    entry = json.loads(log.read_text().splitlines()[-1])
    assert entry["level"] == "error"
    assert "--systemd-cgroup is not supported" in entry["msg"]
    assert entry["time"].endswith("Z")
    assert main(["bogus-command"]) == 1
    assert main(["kill", "c", "SIGNOPE"]) == 1
    assert "unknown signal" in capsys.readouterr().err
    assert main(["--rootless", "maybe", "list"]) == 1
    assert main(["checkpoint", "c"]) == 1
    assert "checkpoint is not supported" in capsys.readouterr().err


def test_state_of_unknown_container_and_bad_id(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert main(["--root", str(tmp_path), "state", "nope"]) == 1
    assert "container 'nope' does not exist" in capsys.readouterr().err
    for bad in ("..", "a/b", "-x", ".hidden"):
        assert main(["--root", str(tmp_path), "delete", "--", bad] if bad[0] == "-" else
                    ["--root", str(tmp_path), "delete", bad]) == 1  # fmt: skip
        assert "invalid container id" in capsys.readouterr().err or bad[0] == "-"
    assert main(["--root", str(tmp_path), "list", "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out) == []


def test_spec_refuses_overwrite(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["spec", "--bundle", str(tmp_path)]) == 0
    spec = json.loads((tmp_path / "config.json").read_text())
    assert spec["process"]["args"] and spec["root"]["path"] == "rootfs"
    before = (tmp_path / "config.json").read_bytes()
    assert main(["spec", "-b", str(tmp_path)]) == 1
    assert "exists" in capsys.readouterr().err
    assert (tmp_path / "config.json").read_bytes() == before


def test_features_shape(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["features"]) == 0
    f = json.loads(capsys.readouterr().out)
    assert f["ociVersionMin"] == "1.0.0"
    assert "createContainer" in f["hooks"] and "poststop" in f["hooks"]
    assert "bind" in f["mountOptions"] and "rbind" in f["mountOptions"]
    lx = f["linux"]
    assert {"mount", "pid", "network", "uts", "ipc", "user", "cgroup"} <= set(lx["namespaces"])
    assert "CAP_SYS_ADMIN" in lx["capabilities"]
    assert lx["cgroup"]["v1"] and lx["cgroup"]["v2"] and not lx["cgroup"]["systemd"]
    assert lx["seccomp"]["enabled"] and "SCMP_ACT_ERRNO" in lx["seccomp"]["actions"]
    assert "SCMP_ARCH_X86_64" in lx["seccomp"]["archs"]


def test_import_is_lean() -> None:
    """The CLI module must not pull in typer, cffi, pyroute2 or the runtime at import."""
    code = (
        "import sys, pyrt.runtime.cli\n"
        "bad = [m for m in ('typer', 'cffi', 'pyroute2', 'pyrt._core', 'subprocess',"
        " 'pyrt.runtime.runtime', 'argparse', 'logging', 'dataclasses') if m in sys.modules]\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_options_between_positionals_and_double_dash() -> None:
    a = parse("kill", "cid", "--all=true", "KILL")
    assert (a.container_id, a.signal, a.all) == ("cid", "KILL", True)  # type: ignore[attr-defined]
    b = parse("delete", "--", "-odd")
    assert b.container_id == "-odd"  # type: ignore[attr-defined]
    c = parse("ps", "--format", "json", "cid", "-ef")
    assert (c.format, c.ps_args) == ("json", ["-ef"])  # type: ignore[attr-defined]
    d = parse("update", "-r", "-", "--memory=5", "c")
    assert (d.resources, d.memory, d.pids_limit) == ("-", 5, None)  # type: ignore[attr-defined]
    e = parse("exec", "cid", "--", "ls")
    assert e.args == ["--", "ls"]  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["create"], "a container id is needed"),
        (["create", "--bogus", "c"], "unknown flag '--bogus'"),
        (["create", "--bundle"], "--bundle needs a value"),
        (["create", "--preserve-fds", "-1", "c"], "must not be negative"),
        (["create", "--preserve-fds=x", "c"], "not an integer"),
        (["state", "a", "b"], "unexpected argument 'b'"),
        (["--log-format", "xml", "list"], "expected one of text, json"),
        (["run", "--detach=maybe", "c"], "expected true or false"),
        (["frobnicate"], "unknown command 'frobnicate'"),
    ],
)
def test_parse_errors_name_the_problem(argv: list[str], message: str) -> None:
    with pytest.raises(UsageError, match=message):
        parse_args(argv)


def test_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    assert capsys.readouterr().out.startswith("usage: pyrt-runc")
    assert main(["kill", "-h"]) == 0


def _record(**over: object) -> dict[str, object]:
    rec: dict[str, object] = {
        "ociVersion": "1.0.2", "id": "c1", "status": "created", "pid": 42, "pid_start": 7,
        "bundle": "/b\u00e9", "rootfs": "/b/rootfs", "annotations": {"k": "v\n\"x\""},
        "created": "2026-01-01T00:00:00.000000000Z", "owner": "",
        "cgroup": {"kind": "v2", "path": "/sys/fs/cgroup/x/c1", "mount": "/sys/fs/cgroup"},
        "config": {"hooks": {"poststop": [{"path": "/bin/true"}]}},
    }  # fmt: skip
    rec.update(over)
    return rec


def _fast_fields(text: str) -> tuple[dict[str, str], str, str]:
    lines, _, rest = text.partition("\nhead ")
    fields = dict(ln.split(" ", 1) for ln in lines.splitlines()[1:] if " " in ln)
    n, _, rest = rest.partition("\n")
    head, rest = rest[: int(n)], rest[int(n) + 1 :]
    n2, _, rest = rest.removeprefix("tail ").partition("\n")
    return fields, head, rest[: int(n2)]


@pytest.mark.parametrize("status", ["created", "running", "paused", "stopped"])
def test_fast_state_renders_the_state_json(status: str) -> None:
    """head + pid + status + tail is exactly what `state` prints through Python."""
    rec = _record()
    text = fast_state_text(rec)
    assert text.startswith("pyrt-fast 1\nusable 1\n")
    fields, head, tail = _fast_fields(text)
    assert fields["pid"] == "42" and fields["start"] == "7"
    assert fields["poststop"] == "1" and fields["poststart"] == "0"
    assert fields["freezer"] == "v2 /sys/fs/cgroup/x/c1" and fields["cgroups"] == "1"
    pid = 0 if status == "stopped" else 42
    rendered = head + f'{pid},\n  "status": "{status}"' + tail
    want = oci_state(rec, status)  # what Runtime.state returns for the record
    assert rendered == json.dumps(want, indent=2)


def test_fast_state_unusable_cases() -> None:
    # a v1 cgroup without a freezer, the in-memory fake, malformed hooks: Python decides
    v1 = {"kind": "v1", "paths": {"memory": "/sys/fs/cgroup/memory/x"}, "unified": None}
    assert "\nusable 0\n" in fast_state_text(_record(cgroup=v1))
    from pyrt.runtime.cgroups import FakeManager

    fake = FakeManager(f"fast-{id(v1)}").to_state()
    assert "\nusable 0\n" in fast_state_text(_record(cgroup=fake))
    # a cgroup state Python cannot reopen: no freezer check and nothing to remove, as in
    # Runtime._status / Runtime.delete
    fields, _, _ = _fast_fields(fast_state_text(_record(cgroup={"kind": "nope"})))
    assert (fields["usable"], fields["freezer"], fields["cgroups"]) == ("1", "none", "0")
    assert "\nusable 0\n" in fast_state_text(_record(config={"hooks": 5}))
    # creating, no pid start yet
    fields, _, _ = _fast_fields(fast_state_text(_record(status="creating", pid_start=None)))
    assert fields["creating"] == "1" and fields["start"] == "-"


def test_state_json_holds_the_fast_lines_and_the_record(tmp_path: Path) -> None:
    """One file per write: the record's line, then the fast lines (none while creating);
    a created record appended to the creating one is the record once its line is whole;
    the layouts of older pyrt are still read."""
    from pyrt.runtime.state import ContainerDir

    cdir = ContainerDir(str(tmp_path), "c1")
    assert cdir.make()
    rec = _record(annotations={"k": "line\nbreak"})
    cdir.write(rec)
    assert os.listdir(cdir.path) == ["state.json"]
    line, _, fast = Path(cdir.state_path).read_text().partition("\n")
    assert json.loads(line) == rec == cdir.read() and fast == fast_state_text(rec)
    creating = _record(status="creating", pid=0, pid_start=None)
    cdir.write(creating)
    assert json.loads(Path(cdir.state_path).read_text()) == creating == cdir.read()
    # pyrt-runc's native create appends the created record: until its line is whole, the
    # creating record is the record
    whole = Path(cdir.state_path).read_bytes()
    line_b = json.dumps(rec, separators=(",", ":")).encode()
    for cut in (1, len(line_b) // 2, len(line_b)):
        Path(cdir.state_path).write_bytes(whole + line_b[:cut])
        assert cdir.read() == creating
    for tail in (b"\n", b"\n" + fast.encode()[:9], b"\n" + fast.encode()):
        Path(cdir.state_path).write_bytes(whole + line_b + tail)
        assert cdir.read() == rec
    Path(cdir.state_path).write_text(json.dumps(rec))  # a record alone (older pyrt)
    assert cdir.read() == rec
    Path(cdir.state_path).write_text(fast + json.dumps(rec))  # fast lines first (older)
    assert cdir.read() == rec
