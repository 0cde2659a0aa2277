"""Image endpoints over pyrt.images.service.ImageService (engine.images).

POST /images/create (pull with docker's JSON progress stream, or fromSrc=- import),
GET /images/json, GET /images/{name}/json, GET /images/{name}/history,
POST /images/{name}/tag, POST /images/{name}/push, DELETE /images/{name},
GET /images/{name}/get and GET /images/get (save), POST /images/load, POST /images/prune.

Image names may contain slashes (127.0.0.1:5000/library/busybox:1), so {name} takes the
rest of the path up to the endpoint's suffix, as moby's router does.
"""

from __future__ import annotations

import json
import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from pyrt.api.errors import message_of
from pyrt.api.params import query_bool, query_filters, query_list, query_str
from pyrt.api.routing import (
    STREAM_BODY,
    App,
    BodyWriter,
    Request,
    Response,
    Router,
    StreamResponse,
    empty_response,
    json_response,
)
from pyrt.errors import InvalidArgument, NotFound, Unavailable
from pyrt.images.progress import ProgressEvent
from pyrt.oci.reference import Reference

_END = object()


def _line(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj).encode() + b"\r\n"


def _error_line(exc: BaseException) -> bytes:
    msg = message_of(exc)
    return _line({"errorDetail": {"message": msg}, "error": msg})


def _run_with_progress(work: Any) -> Iterator[tuple[str, Any]]:
    """Run work(sink) in a thread; yield ("event", ProgressEvent) as they come, then
    ("done", result) or ("error", exc)."""
    q: queue.SimpleQueue[tuple[str, Any]] = queue.SimpleQueue()

    def sink(ev: ProgressEvent) -> None:
        q.put(("event", ev))

    def run() -> None:
        try:
            q.put(("done", work(sink)))
        except BaseException as e:  # handed to the streaming thread
            q.put(("error", e))

    t = threading.Thread(target=run, name="pyrt-api-transfer", daemon=True)
    t.start()
    while True:
        item = q.get()
        yield item
        if item[0] in ("done", "error"):
            t.join()
            return


# -- create: pull / import --------------------------------------------------------------------


def _pull(req: Request, from_image: str, tag: str) -> StreamResponse:
    app: App = req.app
    from pyrt.oci.reference import parse_normalized, parse_reference

    image = from_image
    if tag:
        image = f"{from_image}{'@' if tag.startswith('sha256:') else ':'}{tag}"
    elif parse_reference(from_image).is_name_only():
        return _pull_all_tags(req, from_image)
    ref = parse_normalized(image)  # InvalidArgument (400) before anything streams
    platform = query_str(req.query, "platform") or None
    shown_tag = ref.digest or ref.tag or "latest"
    repo = _pulling_from(ref)

    def work(sink: Any) -> Any:
        try:
            return app.engine.images.pull(str(ref), platform=platform, progress=sink)
        except Unavailable as e:
            if str(ref) != HELLO_FALLBACK_REFERENCE or platform:
                raise
            return _hello_fallback(app, e)

    def chunks() -> Iterator[bytes]:
        started = False
        announced: set[str] = set()
        for kind, value in _run_with_progress(work):
            if kind == "error":
                if not started:
                    raise value
                yield _error_line(value)
                return
            if not started:
                started = True
                yield _line({"status": f"Pulling from {repo}", "id": shown_tag})
            if kind == "done" and isinstance(value, _HelloFallback):
                yield _line({"status": f"{value.reason}: using the hello-world image "
                                       "built into pyrt"})
                for layer in value.layers:
                    yield _line({"status": "Pull complete", "progressDetail": {},
                                 "id": layer})
                yield _line({"status": f"Digest: {value.digest}"})
                yield _line({"status": f"Status: {value.status}"})
                _publish(app, "image", "pull", ref.familiar(), {"name": ref.familiar()})
                return
            if kind == "event":
                yield from _layer_lines(value, announced)
            else:
                digest = _pulled_digest(value, ref.name)
                if digest:
                    yield _line({"status": f"Digest: {digest}"})
                yield _line({"status": f"Status: {value.status}"})
                _publish(app, "image", "pull", ref.familiar(), {"name": ref.familiar()})

    return StreamResponse(chunks=chunks())


def _pulling_from(ref: Reference) -> str:
    """The repository as docker's "Pulling from ..." line names it: its path without the
    registry's host (library/busybox, team/app), for every registry, as moby does."""
    return ref.path


def _layer_lines(ev: ProgressEvent, announced: set[str]) -> Iterator[bytes]:
    """A layer's progress line, after a "Pulling fs layer" line the first time it shows."""
    if ev.id not in announced:
        announced.add(ev.id)
        if ev.kind.value != "Already exists":
            yield _line({"status": "Pulling fs layer", "progressDetail": {}, "id": ev.id})
    yield _line(ev.to_json())


def _pulled_digest(pulled: Any, name: str) -> str | None:
    """The digest docker's "Digest: ..." line shows: the repo digest of `name`, else the
    index's or the manifest's."""
    prefix = f"{name}@"
    for d in pulled.repo_digests:
        if d.startswith(prefix):
            return str(d[len(prefix):])
    found: str | None = pulled.index_digest or pulled.manifest_digest
    return found


@dataclass(frozen=True)
class _TagStarted:
    tag: str


@dataclass(frozen=True)
class _TagPulled:
    pulled: Any  # pyrt.images.service.PulledImage


def _pull_all_tags(req: Request, repository: str) -> StreamResponse:
    """POST /images/create with a repository name and no tag: every tag the registry
    holds, one after the other (moby pulls them all too), each announced by a "Pulling
    from" line with the tag as its id and closed by its "Digest:" line; one "Status:" line
    for the repository at the end. The tag list is fetched before the stream starts, so a
    missing repository is a plain 404."""
    app: App = req.app
    from pyrt.oci.reference import parse_reference

    ref = parse_reference(repository)
    platform = query_str(req.query, "platform") or None
    tags = app.engine.images.list_tags(str(ref))
    if not tags:
        raise NotFound(f"repository {ref.familiar_name} has no tags to pull")
    repo = _pulling_from(ref)

    def work(sink: Any) -> None:
        for t in tags:
            sink(_TagStarted(t))
            sink(_TagPulled(app.engine.images.pull(f"{ref.name}:{t}", platform=platform,
                                                   progress=sink)))

    def chunks() -> Iterator[bytes]:
        announced: set[str] = set()
        newer = False
        for kind, value in _run_with_progress(work):
            if kind == "error":
                yield _error_line(value)
                return
            if kind == "done":
                status = "Downloaded newer image for" if newer else "Image is up to date for"
                yield _line({"status": f"Status: {status} {ref.familiar_name}"})
                _publish(app, "image", "pull", ref.familiar_name, {"name": ref.familiar_name})
                return
            if isinstance(value, _TagStarted):
                yield _line({"status": f"Pulling from {repo}", "id": value.tag})
            elif isinstance(value, _TagPulled):
                newer = newer or value.pulled.downloaded
                digest = _pulled_digest(value.pulled, ref.name)
                if digest:
                    yield _line({"status": f"Digest: {digest}"})
            else:
                yield from _layer_lines(value, announced)

    return StreamResponse(chunks=chunks())


#: the one image a pull falls back to when its registry cannot be reached
HELLO_FALLBACK_REFERENCE = "docker.io/library/hello-world:latest"


@dataclass
class _HelloFallback:
    reason: str
    digest: str
    layers: list[str]
    status: str


def _hello_fallback(app: App, cause: Unavailable) -> _HelloFallback:
    """docker.io is unreachable: register the hello-world image built into pyrt
    (pyrt.images.hello) as hello-world:latest instead; the stream says so."""
    from pyrt.images.hello import hello_world_image

    images = app.engine.images
    before = images.inspect(HELLO_FALLBACK_REFERENCE)["Id"] if images.exists(
        HELLO_FALLBACK_REFERENCE) else None
    digest = hello_world_image(images.store, images)
    info = images.inspect(HELLO_FALLBACK_REFERENCE)
    layers = [d.split(":", 1)[1][:12] for d in info["RootFS"]["Layers"]]
    status = ("Image is up to date for hello-world:latest" if before == info["Id"]
              else "Downloaded newer image for hello-world:latest")
    return _HelloFallback(reason=str(cause), digest=digest, layers=layers, status=status)


def _import(req: Request) -> StreamResponse:
    app: App = req.app
    from pyrt.images.importer import import_rootfs

    src = query_str(req.query, "fromSrc")
    if src != "-":
        raise InvalidArgument(f"fromSrc {src!r}: only '-' (the request body) is supported; "
                              "importing from a URL needs network access pyrtd does not use")
    repo = query_str(req.query, "repo")
    tag = query_str(req.query, "tag")
    reference = None
    if repo:
        reference = f"{repo}:{tag}" if tag else repo
    changes = query_list(req.query, "changes")
    message = query_str(req.query, "message")
    platform = query_str(req.query, "platform") or None
    images = app.engine.images
    image_id = import_rootfs(req.stream(), store=images.store, service=images,
                             changes=changes, reference=reference, message=message,
                             platform=platform)
    _publish(app, "image", "import", image_id, {"name": reference or image_id})
    return StreamResponse(chunks=iter([_line({"status": image_id})]))


def create(req: Request) -> StreamResponse:
    from_image = query_str(req.query, "fromImage")
    from_src = query_str(req.query, "fromSrc")
    if from_image and from_src:
        raise InvalidArgument("fromImage and fromSrc are mutually exclusive")
    if from_image:
        return _pull(req, from_image, query_str(req.query, "tag"))
    if from_src:
        return _import(req)
    raise InvalidArgument("either fromImage or fromSrc is required")


def _publish(app: App, typ: str, action: str, actor: str, attrs: dict[str, str]) -> None:
    events = getattr(app.engine, "events", None)
    if events is not None:
        events.publish(typ, action, actor, attrs)


# -- views ------------------------------------------------------------------------------------


def list_images(req: Request) -> Response:
    app: App = req.app
    filters = query_filters(req.query)
    out = app.engine.images.list(all=query_bool(req.query, "all"), filters=filters)
    return json_response(out)


def inspect(req: Request) -> Response:
    app: App = req.app
    return json_response(app.engine.images.inspect(req.params["name"]))


def history(req: Request) -> Response:
    app: App = req.app
    return json_response(app.engine.images.history(req.params["name"]))


def tag(req: Request) -> Response:
    app: App = req.app
    repo = query_str(req.query, "repo")
    if not repo:
        raise InvalidArgument("repo: a repository name is required")
    t = query_str(req.query, "tag")
    target = f"{repo}:{t}" if t else repo
    ref = app.engine.images.tag(req.params["name"], target)
    image = app.engine.images.get(str(ref))
    _publish(app, "image", "tag", image.id, {"name": ref.familiar()})
    return empty_response(201)


def push(req: Request) -> StreamResponse:
    app: App = req.app
    from pyrt.oci.reference import parse_normalized

    name = req.params["name"]
    t = query_str(req.query, "tag")
    ref = parse_normalized(f"{name}:{t}" if t else name)
    try:
        app.engine.images.get(str(ref))  # 404 before anything streams, in dockerd's words
    except NotFound:
        raise NotFound("An image does not exist locally with the tag: "
                       f"{ref.name_only().familiar()}") from None
    repo = str(ref.name_only())

    def work(sink: Any) -> Any:
        return app.engine.images.push(str(ref), progress=sink)

    def chunks() -> Iterator[bytes]:
        yield _line({"status": f"The push refers to repository [{repo}]"})
        for kind, value in _run_with_progress(work):
            if kind == "error":
                yield _error_line(value)
                return
            if kind == "event":
                yield _line(value.to_json())
            else:
                shown = ref.tag or "latest"
                yield _line({"status": f"{shown}: digest: {value.digest} size: {value.size}"})
                yield _line({"progressDetail": {}, "aux": {
                    "Tag": shown, "Digest": value.digest, "Size": value.size}})
                _publish(app, "image", "push", str(ref), {"name": ref.familiar()})

    return StreamResponse(chunks=chunks())


def delete(req: Request) -> Response:
    app: App = req.app
    name = req.params["name"]
    force = query_bool(req.query, "force")
    prune = not query_bool(req.query, "noprune")
    engine = app.engine
    if hasattr(engine, "remove_image"):
        out = engine.remove_image(name, force=force, prune=prune)
    else:
        out = engine.images.remove(name, force=force, prune=prune)
    for item in out:
        if "Untagged" in item:
            _publish(app, "image", "untag", item["Untagged"], {"name": item["Untagged"]})
        elif "Deleted" in item and item["Deleted"].startswith("sha256:"):
            _publish(app, "image", "delete", item["Deleted"], {"name": item["Deleted"]})
    return json_response(out)


def prune(req: Request) -> Response:
    app: App = req.app
    filters = query_filters(req.query)
    engine = app.engine
    in_use = getattr(getattr(engine, "containers", None), "image_user", None)
    kw: dict[str, Any] = {"filters": filters}
    if in_use is not None:
        kw["in_use"] = in_use
    out = engine.images.prune(**kw)
    if out.get("ImagesDeleted") is None:
        out["ImagesDeleted"] = []
    for item in out["ImagesDeleted"]:
        if "Deleted" in item and item["Deleted"].startswith("sha256:"):
            _publish(app, "image", "delete", item["Deleted"], {"name": item["Deleted"]})
    return json_response(out)


# -- save / load ------------------------------------------------------------------------------


def _save(req: Request, names: list[str]) -> StreamResponse:
    app: App = req.app
    from pyrt.images.archive import save
    from pyrt.oci.reference import parse_normalized

    if not names:
        raise InvalidArgument("names: at least one image name is required")
    images = app.engine.images
    chosen: dict[str, tuple[Any, list[str]]] = {}
    for n in names:
        image = images.get(n)  # NotFound (404) before anything streams
        entry = chosen.setdefault(image.id, (image, []))
        is_id = n.startswith("sha256:") or image.id.split(":", 1)[1].startswith(n)
        if not is_id:
            try:
                ref = parse_normalized(n)
            except InvalidArgument:
                ref = None
            if ref is not None and ref.digest is None and str(ref) in image.repo_tags:
                if str(ref) not in entry[1]:
                    entry[1].append(str(ref))
            elif ref is not None and ref.digest is None and ref.tag is None:
                entry[1].extend(t for t in image.repo_tags if t.startswith(f"{ref.name}:"))
    fmt = "docker"

    def write(out: BodyWriter) -> None:
        save(list(chosen.values()), out, fmt, store=images.store)  # type: ignore[arg-type]
        for image, _tags in chosen.values():
            _publish(app, "image", "save", image.id, {"name": image.id})

    return StreamResponse(writer=write, content_type="application/x-tar")


def save_one(req: Request) -> StreamResponse:
    return _save(req, [req.params["name"]])


def save_many(req: Request) -> StreamResponse:
    return _save(req, query_list(req.query, "names"))


def load(req: Request) -> Response:
    app: App = req.app
    from pyrt.images.archive import load as load_archive

    query_bool(req.query, "quiet")  # validated; the output is the loaded list either way
    images = app.engine.images
    loaded = load_archive(req.stream(), store=images.store, service=images)
    lines = []
    for item in loaded:
        text = (f"Loaded image ID: {item}" if item.startswith("sha256:")
                else f"Loaded image: {item}")
        lines.append(_line({"stream": text + "\n"}))
        _publish(app, "image", "load", item, {"name": item})
    return Response(200, b"".join(lines), "application/json")


def register(router: Router) -> None:
    router.add("POST", "/images/create", create, max_body=STREAM_BODY)
    router.add("GET", "/images/json", list_images)
    router.add("POST", "/images/load", load, max_body=STREAM_BODY)
    router.add("POST", "/images/prune", prune)
    router.add("GET", "/images/get", save_many)
    router.add("GET", "/images/{name:.+}/json", inspect)
    router.add("GET", "/images/{name:.+}/history", history)
    router.add("GET", "/images/{name:.+}/get", save_one)
    router.add("POST", "/images/{name:.+}/tag", tag)
    router.add("POST", "/images/{name:.+}/push", push)
    router.add("DELETE", "/images/{name:.+}", delete)


__all__ = ["register"]
