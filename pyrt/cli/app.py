# ruff: noqa: B008 - typer declares parameters with calls in their defaults
"""The `pyrt` command (console script pyrt-py = pyrt.cli.app:main; the venv's bin/pyrt is the
C front end csrc/cli/main.c, which runs a non-interactive `pyrt run` itself and execs
pyrt-py for everything else).

    pyrt [-H unix:///run/pyrt/pyrt.sock] COMMAND ...

`pyrt version` is answered without loading typer (the fast path); every other command
builds the typer app (build_app) on demand. Exit statuses follow docker: 125 for a wrong
flag; a command that fails exits 1, except `run`, which exits 125 when the daemon refuses;
126/127 when the container's command cannot be invoked / is not found, else the
container's own status for run, start -a and exec.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

from pyrt.cli import STATE, CLIError, report

# typing costs ~5 ms of imports on every CLI command: annotations only need it for mypy
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, TypeVar

    F = TypeVar("F", bound=Callable[..., Any])

HELP = "pyrt: a container engine in the shape of Docker (client of pyrtd)"


def _fast_path(args: list[str]) -> int | None:
    """Handle `[-H X] version [--format F]`, `[-H X] run ...` and `[-H X] ps ...` without
    typer; None when it is something else."""
    rest = list(args)
    host = None
    while rest and rest[0] in ("-H", "--host") and len(rest) > 1:
        host, rest = rest[1], rest[2:]
    if rest and rest[0].startswith("--host="):
        host, rest = rest[0].split("=", 1)[1], rest[1:]
    if rest and rest[0] == "run":
        parsed = parse_run(rest[1:])
        if parsed is None:
            return None
        STATE.host = host
        return invoke_run(**parsed)
    if rest and rest[0] == "ps":
        parsed = parse_ps(rest[1:])
        if parsed is None:
            return None
        STATE.host = host
        from pyrt.cli.containers import ps_command

        ps_command(parsed["all_"], parsed["quiet"], parsed["filt"], parsed["fmt"],
                   parsed["no_trunc"], parsed["last"], parsed["latest"], parsed["size"])
        return 0
    if not rest or rest[0] != "version":
        return None
    fmt = None
    tail = rest[1:]
    if len(tail) == 2 and tail[0] in ("-f", "--format"):
        fmt = tail[1]
    elif len(tail) == 1 and tail[0].startswith("--format="):
        fmt = tail[0].split("=", 1)[1]
    elif tail:
        return None
    STATE.host = host
    from pyrt.cli.system import version_command

    return version_command(fmt)


#: a command's options: (parameter, flags, kind: flag, str, int or list)
Options = tuple[tuple[str, tuple[str, ...], str], ...]

#: `pyrt run`'s options: (parameter, flags, kind) — the fast path (parse_run) and the
#: typer command (help, completion) take the same ones (a unit test compares them)
RUN_OPTIONS: Options = (
    ("detach", ("-d", "--detach"), "flag"),
    ("rm", ("--rm",), "flag"),
    ("name", ("--name",), "str"),
    ("interactive", ("-i", "--interactive"), "flag"),
    ("tty", ("-t", "--tty"), "flag"),
    ("env", ("-e", "--env"), "list"),
    ("env_file", ("--env-file",), "list"),
    ("workdir", ("-w", "--workdir"), "str"),
    ("user", ("-u", "--user"), "str"),
    ("entrypoint", ("--entrypoint",), "str"),
    ("label", ("-l", "--label"), "list"),
    ("hostname", ("-h", "--hostname"), "str"),
    ("restart", ("--restart",), "str"),
    ("volume", ("-v", "--volume"), "list"),
    ("mount", ("--mount",), "list"),
    ("tmpfs", ("--tmpfs",), "list"),
    ("volumes_from", ("--volumes-from",), "list"),
    ("memory", ("-m", "--memory"), "str"),
    ("detach_keys", ("--detach-keys",), "str"),
    ("quiet", ("-q", "--quiet"), "flag"),
    ("network", ("--network", "--net"), "str"),
    ("publish", ("-p", "--publish"), "list"),
    ("publish_all", ("-P", "--publish-all"), "flag"),
    ("ip", ("--ip",), "str"),
    ("network_alias", ("--network-alias",), "list"),
    ("dns", ("--dns",), "list"),
)


#: `pyrt ps`'s options, for the fast path (the typer command takes the same: a unit test
#: compares them)
PS_OPTIONS: Options = (
    ("all_", ("-a", "--all"), "flag"),
    ("quiet", ("-q", "--quiet"), "flag"),
    ("filt", ("-f", "--filter"), "list"),
    ("fmt", ("--format",), "str"),
    ("no_trunc", ("--no-trunc",), "flag"),
    ("last", ("-n", "--last"), "int"),
    ("latest", ("-l", "--latest"), "flag"),
    ("size", ("-s", "--size"), "flag"),
)


def parse_options(command: str, options: Options, args: list[str]
                  ) -> tuple[dict[str, Any], list[str]] | None:
    """Docker-style options before the first positional argument, without typer (typer
    0.29 imports pydantic to parse: ~150 ms) nor argparse (gettext, locale, shutil: ~10
    ms): `-it` combines flags, `-eA=1` / `--name=x` attach a value, `--` ends the options.
    Returns (values by parameter, the arguments from the first positional one on); None
    for --help (typer shows it). Bad options: CLIError, status 125."""

    def error(message: str) -> CLIError:
        return CLIError(f"{command}: {message}\nSee 'pyrt {command} --help'.", 125)

    by_flag = {flag: (dest, kind, flags) for dest, flags, kind in options for flag in flags}
    out: dict[str, Any] = {dest: (False if kind == "flag" else None)
                           for dest, _, kind in options}

    def take(flag: str, value: str | None, rest: list[str]) -> None:
        dest, kind, flags = by_flag[flag]
        if kind == "flag":
            if value is not None:
                raise error(f"argument {'/'.join(flags)}: ignored explicit argument "
                            f"{value!r}")
            out[dest] = True
            return
        if value is None:
            if not rest:
                raise error(f"argument {'/'.join(flags)}: expected one argument")
            value = rest.pop(0)
        if kind == "list":
            out[dest] = [*(out[dest] or []), value]
        elif kind == "int":
            try:
                out[dest] = int(value)
            except ValueError:
                raise error(f"argument {'/'.join(flags)}: invalid int value: "
                            f"{value!r}") from None
        else:
            out[dest] = value

    rest = list(args)
    while rest:
        arg = rest[0]
        if arg == "--help":
            return None
        if arg == "--":
            return out, rest[1:]
        if not arg.startswith("-") or arg == "-":
            return out, rest
        rest.pop(0)
        if arg.startswith("--"):
            flag, eq, value = arg.partition("=")
            if flag not in by_flag:
                raise error(f"unrecognized arguments: {arg}")
            take(flag, value if eq else None, rest)
            continue
        i = 1
        while i < len(arg):  # -it, -dit, -eA=1, -de A=1
            flag = f"-{arg[i]}"
            if flag not in by_flag:
                raise error(f"unrecognized arguments: {arg}")
            if by_flag[flag][1] == "flag":
                take(flag, None, rest)
                i += 1
                continue
            take(flag, arg[i + 1:] or None, rest)
            break
    return out, []


def parse_run(args: list[str]) -> dict[str, Any] | None:
    """`pyrt run [OPTIONS] IMAGE [COMMAND...]` parsed without typer (see parse_options);
    everything after the image is the command. None for --help."""
    parsed = parse_options("run", RUN_OPTIONS, args) if args else None
    if parsed is None:
        return None
    out, rest = parsed
    if not rest:
        raise CLIError("run: the following arguments are required: image\n"
                       "See 'pyrt run --help'.", 125)
    out["image"], out["command"] = rest[0], rest[1:]
    return out


def parse_ps(args: list[str]) -> dict[str, Any] | None:
    """`pyrt ps [OPTIONS]` without typer; None for --help."""
    parsed = parse_options("ps", PS_OPTIONS, args)
    if parsed is None:
        return None
    out, rest = parsed
    if rest:
        raise CLIError(f"ps: unexpected argument {rest[0]!r}\nSee 'pyrt ps --help'.", 125)
    return out


def invoke_run(*, image: str, command: list[str] | None, label: list[str] | None,
               volume: list[str] | None, **opts: Any) -> int:
    from pyrt.cli.containers import run_command

    return run_command(image, command or [], labels=label, volumes=volume, **opts)


def _exit(code: int | None) -> None:
    if code:
        import typer

        raise typer.Exit(code)


_GROUPS = ("system", "image", "container", "daemon", "volume", "network")


def invoked(args: list[str]) -> tuple[str | None, str | None]:
    """The command words of argv after the global options: ("image", "ls"), ("ps", None);
    (None, None) when none is given (help, completion)."""
    i = 0
    while i < len(args) and args[i].startswith("-"):
        i += 2 if args[i] in ("-H", "--host") else 1
    first = args[i] if i < len(args) else None
    second = args[i + 1] if first in _GROUPS and i + 1 < len(args) else None
    return first, second


class _Selective:
    """A typer app that registers only the commands the invocation can reach: typer
    builds a (pydantic) adapter for every parameter of every registered command, which
    costs ~1 ms a parameter; `pyrt ps` needs only ps's."""

    def __init__(self, inner: Any, group: str | None, words: tuple[str | None, str | None]
                 ) -> None:
        self.inner, self.group, self.words = inner, group, words

    def wanted(self, name: str) -> bool:
        first, second = self.words
        if first is None or first.startswith("-"):
            return True
        if self.group is None:
            return first == name
        return first == self.group and (second is None or second.startswith("-")
                                        or second == name)

    def command(self, name: str | None = None, **kw: Any) -> Callable[[F], F]:
        def register(fn: F) -> F:
            shown = name or fn.__name__.replace("_", "-")
            if self.wanted(shown):
                self.inner.command(shown, **kw)(fn)
            return fn

        return register

    def callback(self, **kw: Any) -> Callable[[F], F]:
        def register(fn: F) -> F:
            self.inner.callback(**kw)(fn)
            return fn

        return register

    def add_typer(self, sub: _Selective, name: str) -> None:
        first = self.words[0]
        if first is None or first.startswith("-") or first == name:
            self.inner.add_typer(sub.inner, name=name)


def build_app(args: list[str] | None = None) -> Any:
    """The typer app; with `args`, only the commands they can reach are registered."""
    import typer

    from pyrt.cli import containers as ct
    from pyrt.cli import daemon_cmd as dm
    from pyrt.cli import images as im
    from pyrt.cli import system as sy

    Opt, Arg = typer.Option, typer.Argument  # noqa: N806
    ctx_run = {"allow_interspersed_args": False}
    words = invoked(args) if args is not None else (None, None)
    root_app = typer.Typer(help=HELP, no_args_is_help=True, add_completion=True,
                           pretty_exceptions_enable=False, rich_markup_mode=None)
    app = _Selective(root_app, None, words)

    def group(name: str, hlp: str) -> _Selective:
        sub = typer.Typer(help=hlp, no_args_is_help=True)

        @sub.callback()
        def _group() -> None:
            pass

        return _Selective(sub, name, words)

    system_app = group("system", "Manage pyrt")
    image_app = group("image", "Manage images")
    container_app = group("container", "Manage containers")
    daemon_app = group("daemon", "Start, stop and check the local pyrtd")
    volume_app = group("volume", "Manage volumes")
    network_app = group("network", "Manage networks")

    @app.callback()
    def root(host: str | None = Opt(None, "-H", "--host", envvar="PYRT_HOST",
                                    help="Daemon socket (unix:///run/pyrt/pyrt.sock)")
             ) -> None:
        STATE.host = host

    # -- system ------------------------------------------------------------------------------
    @app.command(help="Show the pyrt version information")
    def version(fmt: str | None = Opt(None, "-f", "--format", help="json or a template")
                ) -> None:
        _exit(sy.version_command(fmt))

    def info(fmt: str | None = Opt(None, "-f", "--format", help="json or a template")
             ) -> None:
        sy.info_command(fmt)

    app.command(help="Display system-wide information")(info)
    system_app.command("info", help="Display system-wide information")(info)

    @system_app.command("df", help="Show pyrt disk usage")
    def df(fmt: str | None = Opt(None, "--format")) -> None:
        sy.df_command(fmt)

    def events(since: str | None = Opt(None, "--since", help="Show events since this time"),
               until: str | None = Opt(None, "--until", help="Stream events until this time"),
               filt: list[str] | None = Opt(None, "-f", "--filter", help="key=value"),
               fmt: str | None = Opt(None, "--format")) -> None:
        sy.events_command(since, until, filt, fmt)

    system_app.command("events", help="Get real time events from the server")(events)
    app.command("events", help="Get real time events from the server")(events)

    # -- images ------------------------------------------------------------------------------
    def pull(name: str = Arg(..., metavar="NAME[:TAG|@DIGEST]"),
             quiet: bool = Opt(False, "-q", "--quiet", help="Suppress verbose output"),
             platform: str | None = Opt(None, "--platform"),
             all_tags: bool = Opt(False, "-a", "--all-tags")) -> None:
        im.pull_command(name, quiet, platform, all_tags)

    def images(name: str | None = Arg(None, metavar="[REPOSITORY[:TAG]]"),
               all_: bool = Opt(False, "-a", "--all", help="Show all images"),
               quiet: bool = Opt(False, "-q", "--quiet", help="Only show image IDs"),
               filt: list[str] | None = Opt(None, "-f", "--filter", help="key=value"),
               fmt: str | None = Opt(None, "--format", help="table, json or a template"),
               digests: bool = Opt(False, "--digests"),
               no_trunc: bool = Opt(False, "--no-trunc")) -> None:
        im.images_command(name, all_, quiet, filt, fmt, digests, no_trunc)

    def rmi(names: list[str] = Arg(..., metavar="IMAGE..."),
            force: bool = Opt(False, "-f", "--force"),
            no_prune: bool = Opt(False, "--no-prune")) -> None:
        _exit(im.rmi_command(names, force, no_prune))

    def tag(source: str = Arg(..., metavar="SOURCE_IMAGE[:TAG]"),
            target: str = Arg(..., metavar="TARGET_IMAGE[:TAG]")) -> None:
        im.tag_command(source, target)

    def history(name: str = Arg(..., metavar="IMAGE"),
                quiet: bool = Opt(False, "-q", "--quiet"),
                fmt: str | None = Opt(None, "--format"),
                no_trunc: bool = Opt(False, "--no-trunc"),
                human: bool = Opt(True, "-H", "--human")) -> None:
        im.history_command(name, quiet, fmt, no_trunc, human)

    def save(names: list[str] = Arg(..., metavar="IMAGE..."),
             output: str | None = Opt(None, "-o", "--output", help="Write to a file")) -> None:
        im.save_command(names, output)

    def load(input_path: str | None = Opt(None, "-i", "--input", help="Read from a tar"),
             quiet: bool = Opt(False, "-q", "--quiet")) -> None:
        im.load_command(input_path, quiet)

    def import_(source: str = Arg(..., metavar="file|-"),
                reference: str | None = Arg(None, metavar="[REPOSITORY[:TAG]]"),
                change: list[str] | None = Opt(None, "-c", "--change"),
                message: str | None = Opt(None, "-m", "--message")) -> None:
        im.import_command(source, reference, change, message)

    def push(name: str = Arg(..., metavar="NAME[:TAG]"),
             quiet: bool = Opt(False, "-q", "--quiet")) -> None:
        im.push_command(name, quiet)

    def image_inspect(names: list[str] = Arg(..., metavar="IMAGE..."),
                      fmt: str | None = Opt(None, "-f", "--format")) -> None:
        _exit(im.inspect_command(names, fmt))

    def image_prune(all_: bool = Opt(False, "-a", "--all"),
                    force: bool = Opt(False, "-f", "--force"),
                    filt: list[str] | None = Opt(None, "--filter")) -> None:
        from pyrt.cli import client
        from pyrt.cli.output import human_size

        if not force:
            if not sys.stdin.isatty():
                raise CLIError("image prune: pass -f (--force) to prune without asking", 1)
            if input("WARNING! This will remove images. Continue? [y/N] ").lower() != "y":
                return
        flt = sy.parse_filters(filt)
        flt.setdefault("dangling", ["false" if all_ else "true"])
        out = client().prune_images(flt)
        deleted = out.get("ImagesDeleted") or []
        if deleted:
            sys.stdout.write("Deleted Images:\n")
            for item in deleted:
                for k, v in item.items():
                    sys.stdout.write(f"{k.lower()}: {v}\n")
            sys.stdout.write("\n")
        sys.stdout.write(f"Total reclaimed space: {human_size(out.get('SpaceReclaimed', 0))}\n")

    def login(server: str | None = Arg(None, metavar="[SERVER]"),
              username: str | None = Opt(None, "-u", "--username"),
              password: str | None = Opt(None, "-p", "--password"),
              password_stdin: bool = Opt(False, "--password-stdin")) -> None:
        im.login_command(server, username, password, password_stdin)

    def logout(server: str | None = Arg(None, metavar="[SERVER]")) -> None:
        im.logout_command(server)

    image_cmds: list[tuple[str, Any, str]] = [("pull", pull, "Download an image from a registry"),
                          ("images", images, "List images"),
                          ("rmi", rmi, "Remove one or more images"),
                          ("tag", tag, "Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE"),
                          ("history", history, "Show the history of an image"),
                          ("save", save, "Save images to a tar archive"),
                          ("load", load, "Load an image from a tar archive or STDIN"),
                          ("import", import_, "Import a tarball to create an image"),
                          ("push", push, "Upload an image to a registry"),
                          ("login", login, "Log in to a registry (client side)"),
                          ("logout", logout, "Log out from a registry")]
    for name, fn, hlp in image_cmds:
        app.command(name, help=hlp)(fn)
    image_sub: list[tuple[str, Any, str]] = [("ls", images, "List images"),
                          ("pull", pull, "Pull an image"),
                          ("rm", rmi, "Remove images"), ("tag", tag, "Tag an image"),
                          ("history", history, "Show the history of an image"),
                          ("save", save, "Save images"), ("load", load, "Load images"),
                          ("import", import_, "Import a tarball"),
                          ("push", push, "Push an image"),
                          ("inspect", image_inspect, "Display detailed information"),
                          ("prune", image_prune, "Remove unused images")]
    for name, fn, hlp in image_sub:
        image_app.command(name, help=hlp)(fn)

    # -- containers --------------------------------------------------------------------------
    def run(image: str = Arg(..., metavar="IMAGE"),
            command: list[str] | None = Arg(None, metavar="[COMMAND] [ARG...]"),
            detach: bool = Opt(False, "-d", "--detach", help="Run in the background"),
            rm: bool = Opt(False, "--rm", help="Remove the container when it exits"),
            name: str | None = Opt(None, "--name"),
            interactive: bool = Opt(False, "-i", "--interactive", help="Keep STDIN open"),
            tty: bool = Opt(False, "-t", "--tty", help="Allocate a pseudo-TTY"),
            env: list[str] | None = Opt(None, "-e", "--env"),
            env_file: list[str] | None = Opt(None, "--env-file"),
            workdir: str | None = Opt(None, "-w", "--workdir"),
            user: str | None = Opt(None, "-u", "--user"),
            entrypoint: str | None = Opt(None, "--entrypoint"),
            label: list[str] | None = Opt(None, "-l", "--label"),
            hostname: str | None = Opt(None, "-h", "--hostname"),
            restart: str | None = Opt(None, "--restart"),
            volume: list[str] | None = Opt(None, "-v", "--volume"),
            mount: list[str] | None = Opt(None, "--mount"),
            tmpfs: list[str] | None = Opt(None, "--tmpfs"),
            volumes_from: list[str] | None = Opt(None, "--volumes-from"),
            memory: str | None = Opt(None, "-m", "--memory"),
            detach_keys: str | None = Opt(None, "--detach-keys"),
            quiet: bool = Opt(False, "-q", "--quiet", help="Suppress the pull output"),
            network: str | None = Opt(None, "--network", "--net"),
            publish: list[str] | None = Opt(None, "-p", "--publish"),
            publish_all: bool = Opt(False, "-P", "--publish-all"),
            ip: str | None = Opt(None, "--ip"),
            network_alias: list[str] | None = Opt(None, "--network-alias"),
            dns: list[str] | None = Opt(None, "--dns"),
            ) -> None:
        _exit(invoke_run(image=image, command=command, detach=detach, rm=rm, name=name,
                         interactive=interactive, tty=tty, detach_keys=detach_keys,
                         quiet=quiet, env=env, env_file=env_file, workdir=workdir,
                         user=user, entrypoint=entrypoint, label=label, hostname=hostname,
                         restart=restart, volume=volume, memory=memory, mount=mount,
                         tmpfs=tmpfs, volumes_from=volumes_from, network=network,
                         publish=publish, publish_all=publish_all, ip=ip,
                         network_alias=network_alias, dns=dns))

    def create(image: str = Arg(..., metavar="IMAGE"),
               command: list[str] | None = Arg(None, metavar="[COMMAND] [ARG...]"),
               name: str | None = Opt(None, "--name"),
               interactive: bool = Opt(False, "-i", "--interactive"),
               tty: bool = Opt(False, "-t", "--tty"),
               env: list[str] | None = Opt(None, "-e", "--env"),
               workdir: str | None = Opt(None, "-w", "--workdir"),
               user: str | None = Opt(None, "-u", "--user"),
               entrypoint: str | None = Opt(None, "--entrypoint"),
               label: list[str] | None = Opt(None, "-l", "--label"),
               rm: bool = Opt(False, "--rm"),
               volume: list[str] | None = Opt(None, "-v", "--volume"),
               mount: list[str] | None = Opt(None, "--mount"),
               tmpfs: list[str] | None = Opt(None, "--tmpfs"),
               volumes_from: list[str] | None = Opt(None, "--volumes-from"),
               quiet: bool = Opt(False, "-q", "--quiet"),
               network: str | None = Opt(None, "--network", "--net"),
               publish: list[str] | None = Opt(None, "-p", "--publish"),
               publish_all: bool = Opt(False, "-P", "--publish-all"),
               ip: str | None = Opt(None, "--ip"),
               network_alias: list[str] | None = Opt(None, "--network-alias"),
               dns: list[str] | None = Opt(None, "--dns")) -> None:
        ct.create_command(image, command or [], name, quiet, env=env, workdir=workdir,
                          user=user, entrypoint=entrypoint, tty=tty, interactive=interactive,
                          labels=label, rm=rm, volumes=volume, mount=mount, tmpfs=tmpfs,
                          volumes_from=volumes_from, network=network, publish=publish,
                          publish_all=publish_all, ip=ip, network_alias=network_alias, dns=dns)

    def ps(all_: bool = Opt(False, "-a", "--all", help="Show all containers"),
           quiet: bool = Opt(False, "-q", "--quiet", help="Only display container IDs"),
           filt: list[str] | None = Opt(None, "-f", "--filter", help="key=value"),
           fmt: str | None = Opt(None, "--format", help="table, json or a template"),
           no_trunc: bool = Opt(False, "--no-trunc"),
           last: int | None = Opt(None, "-n", "--last"),
           latest: bool = Opt(False, "-l", "--latest"),
           size: bool = Opt(False, "-s", "--size")) -> None:
        ct.ps_command(all_, quiet, filt, fmt, no_trunc, last, latest, size)

    def logs(container: str = Arg(..., metavar="CONTAINER"),
             follow: bool = Opt(False, "-f", "--follow"),
             tail: str | None = Opt(None, "-n", "--tail"),
             timestamps: bool = Opt(False, "-t", "--timestamps"),
             since_: str | None = Opt(None, "--since"),
             until: str | None = Opt(None, "--until")) -> None:
        ct.logs_command(container, follow, tail, timestamps, since_, until)

    def exec_(container: str = Arg(..., metavar="CONTAINER"),
              command: list[str] = Arg(..., metavar="COMMAND [ARG...]"),
              detach: bool = Opt(False, "-d", "--detach"),
              interactive: bool = Opt(False, "-i", "--interactive"),
              tty: bool = Opt(False, "-t", "--tty"),
              env: list[str] | None = Opt(None, "-e", "--env"),
              user: str | None = Opt(None, "-u", "--user"),
              workdir: str | None = Opt(None, "-w", "--workdir"),
              privileged: bool = Opt(False, "--privileged"),
              detach_keys: str | None = Opt(None, "--detach-keys")) -> None:
        _exit(ct.exec_command(container, command, detach=detach, interactive=interactive,
                              tty=tty, env=env, user=user, workdir=workdir,
                              privileged=privileged, detach_keys=detach_keys))

    def start(containers: list[str] = Arg(..., metavar="CONTAINER..."),
              attach: bool = Opt(False, "-a", "--attach"),
              interactive: bool = Opt(False, "-i", "--interactive"),
              detach_keys: str | None = Opt(None, "--detach-keys")) -> None:
        _exit(ct.start_command(containers, attach, interactive, detach_keys))

    def stop(containers: list[str] = Arg(..., metavar="CONTAINER..."),
             time_: int | None = Opt(None, "-t", "--time"),
             sig: str | None = Opt(None, "-s", "--signal")) -> None:
        from pyrt.cli import client

        c = client(timeout=None)
        _exit(ct.each(containers, lambda i: c.stop(i, time_, sig)))

    def restart(containers: list[str] = Arg(..., metavar="CONTAINER..."),
                time_: int | None = Opt(None, "-t", "--time"),
                sig: str | None = Opt(None, "-s", "--signal")) -> None:
        from pyrt.cli import client

        c = client(timeout=None)
        _exit(ct.each(containers, lambda i: c.restart(i, time_, sig)))

    def kill(containers: list[str] = Arg(..., metavar="CONTAINER..."),
             sig: str | None = Opt(None, "-s", "--signal")) -> None:
        from pyrt.cli import client

        c = client()
        _exit(ct.each(containers, lambda i: c.kill(i, sig)))

    def rm(containers: list[str] = Arg(..., metavar="CONTAINER..."),
           force: bool = Opt(False, "-f", "--force"),
           volumes: bool = Opt(False, "-v", "--volumes")) -> None:
        from pyrt.cli import client

        c = client(timeout=None)
        _exit(ct.each(containers, lambda i: c.remove_container(i, force, volumes)))

    def pause(containers: list[str] = Arg(..., metavar="CONTAINER...")) -> None:
        from pyrt.cli import client

        c = client()
        _exit(ct.each(containers, c.pause))

    def unpause(containers: list[str] = Arg(..., metavar="CONTAINER...")) -> None:
        from pyrt.cli import client

        c = client()
        _exit(ct.each(containers, c.unpause))

    def wait(containers: list[str] = Arg(..., metavar="CONTAINER...")) -> None:
        _exit(ct.wait_command(containers))

    def rename(container: str = Arg(...), new_name: str = Arg(...)) -> None:
        from pyrt.cli import client

        client().rename(container, new_name)

    def container_inspect(containers: list[str] = Arg(..., metavar="CONTAINER..."),
                          fmt: str | None = Opt(None, "-f", "--format"),
                          size: bool = Opt(False, "-s", "--size")) -> None:
        _exit(ct.inspect_command(containers, fmt, size))

    def top(container: str = Arg(...),
            ps_args: list[str] | None = Arg(None, metavar="[ps OPTIONS]")) -> None:
        ct.top_command(container, ps_args or [])

    def stats(containers: list[str] | None = Arg(None, metavar="[CONTAINER...]"),
              all_: bool = Opt(False, "-a", "--all"),
              no_stream: bool = Opt(False, "--no-stream"),
              fmt: str | None = Opt(None, "--format")) -> None:
        ct.stats_command(containers or [], all_, no_stream, fmt)

    def cp(src: str = Arg(..., metavar="SRC"), dest: str = Arg(..., metavar="DEST"),
           archive: bool = Opt(False, "-a", "--archive")) -> None:
        ct.cp_command(src, dest, archive)

    def diff(container: str = Arg(...)) -> None:
        ct.diff_command(container)

    def export(container: str = Arg(...),
               output: str | None = Opt(None, "-o", "--output")) -> None:
        ct.export_command(container, output)

    def commit(container: str = Arg(...),
               reference: str | None = Arg(None, metavar="[REPOSITORY[:TAG]]"),
               author: str | None = Opt(None, "-a", "--author"),
               message: str | None = Opt(None, "-m", "--message"),
               change: list[str] | None = Opt(None, "-c", "--change"),
               pause_: bool = Opt(True, "-p/-P", "--pause/--no-pause")) -> None:
        ct.commit_command(container, reference, author, message, change, pause_)

    def port(container: str = Arg(...),
             private: str | None = Arg(None, metavar="[PRIVATE_PORT[/PROTO]]")) -> None:
        _exit(ct.port_command(container, private))

    cmds: list[tuple[str, Any, str, dict[str, Any]]] = [
        ("run", run, "Create and run a new container from an image", ctx_run),
        ("create", create, "Create a new container", ctx_run),
        ("ps", ps, "List containers", {}),
        ("logs", logs, "Fetch the logs of a container", {}),
        ("exec", exec_, "Execute a command in a running container", ctx_run),
        ("start", start, "Start one or more stopped containers", {}),
        ("stop", stop, "Stop one or more running containers", {}),
        ("restart", restart, "Restart one or more containers", {}),
        ("kill", kill, "Kill one or more running containers", {}),
        ("rm", rm, "Remove one or more containers", {}),
        ("pause", pause, "Pause all processes within one or more containers", {}),
        ("unpause", unpause, "Unpause all processes within one or more containers", {}),
        ("wait", wait, "Block until containers stop, then print their exit codes", {}),
        ("rename", rename, "Rename a container", {}),
        ("top", top, "Display the running processes of a container", ctx_run),
        ("stats", stats, "Display container resource usage statistics", {}),
        ("cp", cp, "Copy files between a container and the local filesystem", {}),
        ("diff", diff, "Inspect changes to files on a container's filesystem", {}),
        ("export", export, "Export a container's filesystem as a tar archive", {}),
        ("commit", commit, "Create a new image from a container's changes", {}),
        ("port", port, "List port mappings of the container", {}),
    ]
    for name, fn, hlp, ctx in cmds:
        app.command(name, help=hlp, context_settings=ctx)(fn)
        container_app.command(name, help=hlp, context_settings=ctx)(fn)
    container_app.command("ls", help="List containers")(ps)
    container_app.command("inspect", help="Display detailed information")(container_inspect)

    @app.command("inspect", help="Return low-level information on containers or images")
    def inspect(names: list[str] = Arg(..., metavar="NAME|ID..."),
                fmt: str | None = Opt(None, "-f", "--format"),
                kind: str | None = Opt(None, "--type", help="container or image")) -> None:
        from pyrt.cli import client
        from pyrt.cli.output import print_object
        from pyrt.errors import NotFound

        c = client()
        found: list[Any] = []
        status = 0
        for n in names:
            try:
                if kind == "image":
                    found.append(c.inspect_image(n))
                    continue
                try:
                    found.append(c.inspect_container(n))
                except NotFound:
                    if kind == "container":
                        raise
                    found.append(c.inspect_image(n))
            except Exception as e:
                if isinstance(e, NotFound):
                    sys.stderr.write(f"Error: No such object: {n}\n")
                    status = 1
                else:
                    status = report(e)
        if fmt and fmt != "json":
            for obj in found:
                print_object(obj, fmt)
        else:
            print_object(found, None)
        _exit(status)

    # -- volumes -----------------------------------------------------------------------------
    @volume_app.command("create", help="Create a volume")
    def volume_create(name: str | None = Arg(None, metavar="[VOLUME]"),
                      driver: str = Opt("local", "-d", "--driver"),
                      opt: list[str] | None = Opt(None, "-o", "--opt", help="key=value"),
                      label: list[str] | None = Opt(None, "--label")) -> None:
        from pyrt.cli import volumes as vo

        vo.create_command(name, driver, opt, label)

    @volume_app.command("ls", help="List volumes")
    def volume_ls(quiet: bool = Opt(False, "-q", "--quiet", help="Only display names"),
                  filt: list[str] | None = Opt(None, "-f", "--filter", help="key=value"),
                  fmt: str | None = Opt(None, "--format")) -> None:
        from pyrt.cli import volumes as vo

        vo.ls_command(quiet, filt, fmt)

    @volume_app.command("inspect", help="Display detailed information on volumes")
    def volume_inspect(names: list[str] = Arg(..., metavar="VOLUME..."),
                       fmt: str | None = Opt(None, "-f", "--format")) -> None:
        from pyrt.cli import volumes as vo

        _exit(vo.inspect_command(names, fmt))

    @volume_app.command("rm", help="Remove one or more volumes")
    def volume_rm(names: list[str] = Arg(..., metavar="VOLUME..."),
                  force: bool = Opt(False, "-f", "--force")) -> None:
        from pyrt.cli import volumes as vo

        _exit(vo.rm_command(names, force))

    @volume_app.command("prune", help="Remove unused local volumes")
    def volume_prune(all_: bool = Opt(False, "-a", "--all", help="All unused, not only "
                                      "anonymous"),
                     force: bool = Opt(False, "-f", "--force"),
                     filt: list[str] | None = Opt(None, "--filter")) -> None:
        from pyrt.cli import volumes as vo

        vo.prune_command(all_, force, filt)

    # -- daemon ------------------------------------------------------------------------------
    @daemon_app.command("start", help="Start pyrtd on the host socket (detached)",
                        context_settings={"ignore_unknown_options": True,
                                          "allow_extra_args": True})
    def daemon_start(flags: list[str] | None = Arg(None, metavar="[PYRTD FLAGS...]")) -> None:
        dm.start_command(flags or [])

    @daemon_app.command("stop", help="Stop the pyrtd serving the host socket (SIGTERM)")
    def daemon_stop(timeout: float = Opt(30.0, "-t", "--timeout")) -> None:
        dm.stop_command(timeout)

    @daemon_app.command("status", help="Is pyrtd running on the host socket? (exit 3: no)")
    def daemon_status() -> None:
        _exit(dm.status_command())

    app.add_typer(system_app, name="system")
    app.add_typer(image_app, name="image")
    app.add_typer(container_app, name="container")
    app.add_typer(daemon_app, name="daemon")
    app.add_typer(volume_app, name="volume")
    if app.wanted("network"):
        from pyrt.cli import networks as nw

        nw.register(network_app)
    app.add_typer(network_app, name="network")
    return root_app


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        code = _fast_path(args)
        if code is not None:
            return code
        import typer
        from typer._click import exceptions as click_exc

        command = typer.main.get_command(build_app(args))
        try:
            rv = command.main(args=args, prog_name="pyrt", standalone_mode=False)
        except click_exc.UsageError as e:
            e.show()
            return 125
        except click_exc.ClickException as e:
            e.show()
            return e.exit_code
        except typer.Abort:
            sys.stderr.write("Aborted!\n")
            return 130
        return rv if isinstance(rv, int) else 0
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0
    except CLIError as e:
        return report(e)
    except Exception as e:
        from pyrt.errors import PyrtError

        if isinstance(e, PyrtError | OSError):
            return report(e)
        raise


if __name__ == "__main__":
    sys.exit(main())
