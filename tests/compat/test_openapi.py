"""pyrtd's responses validated against the Engine API's OpenAPI document, version 1.44
(tests/compat/data/engine-api-1.44.yaml, an excerpt of moby's; its header says which).

schemathesis (PyPI) loads the document, builds each request (path, query, body) from an
operation of it, sends it to a pyrtd on a temporary socket (a requests session whose
adapter for http://localhost/ dials the socket: nothing is resolved or sent elsewhere)
and checks the response: its body against the operation's schema for that status, its
Content-Type against the operation's, and no 5xx. Every error response is also checked
to be {"message": "..."} with Content-Type exactly application/json. Endpoints that
stream JSON lines (pull, push, load, import, events) have each line validated against
the definition the document gives for it (jsonschema), as schemathesis validates one
JSON document per response.

The tests cover normal requests of every endpoint pyrtd serves (system, containers,
exec, images), the error responses (unknown ids, conflicts, malformed JSON, wrong types,
bad values, huge bodies, bad API versions, unknown routes) with moby's messages, and a
generated (hypothesis, through schemathesis) run over the endpoints that cannot change
anything or reach a registry. The daemon must be alive and hold no container at the end.

One deviation from the document is allowed, by name and with its reason: NULL_ALLOWED
(an exec's ExitCode is null until it has one, as dockerd sends it and docker-py needs).
"""

from __future__ import annotations

import io
import json
import os
import re
import secrets
import socket
import tarfile
import time
import urllib.parse
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.integration.test_api_containers import IMAGE, CtDaemon, raw_request, read_head
from tests.registry_fixtures import Registry

schemathesis = pytest.importorskip("schemathesis", reason="pip install '.[test]'")
jsonschema = pytest.importorskip("jsonschema", reason="pip install '.[test]'")
requests = pytest.importorskip("requests", reason="pip install '.[test]'")
yaml = pytest.importorskip("yaml", reason="pip install '.[test]'")
from docker.transport import UnixHTTPAdapter  # noqa: E402
from hypothesis import HealthCheck, given, settings  # noqa: E402
from schemathesis.checks import (  # noqa: E402
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
)

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")

SPEC = Path(__file__).resolve().parent / "data" / "engine-api-1.44.yaml"


@schemathesis.serializer("application/x-tar", "application/octet-stream")
def _bytes_as_is(ctx: Any, value: bytes) -> bytes:
    """Tar archives (archive PUT, load, import) are sent as the test made them."""
    return value


SCHEMA = schemathesis.openapi.from_path(str(SPEC))
DEFINITIONS: dict[str, Any] = yaml.safe_load(SPEC.read_text())["definitions"]
# never resolved: the session sends everything under this prefix to pyrtd's socket
BASE = "http://localhost/v1.44"
CHECKS = [response_schema_conformance, content_type_conformance, not_a_server_error]


def definition_validator(name: str) -> Any:
    """A JSON-schema validator for one definition of the document (for stream lines)."""
    return jsonschema.Draft4Validator({"$ref": f"#/definitions/{name}",
                                       "definitions": DEFINITIONS})


# Where pyrtd knowingly sends what the document does not allow, as dockerd does and
# clients rely on: (operation, field of the JSON object) -> why.
NULL_ALLOWED = {
    ("/exec/{id}/json", "ExitCode"): "null until the exec has ended (dockerd too); "
                                     "docker-py's exec_run(detach=True) reads it by index",
}


def without_allowed_nulls(path: str, resp: Any) -> Any:
    """The response with the fields of NULL_ALLOWED that are null taken out of its body
    (to validate the rest); the response itself when there are none."""
    fields = [f for (p, f) in NULL_ALLOWED if p == path]
    if not fields or resp.status_code != 200:
        return resp
    body = json.loads(resp.content)
    if not any(f in body and body[f] is None for f in fields):
        return resp
    for f in fields:
        if body.get(f, 0) is None:
            del body[f]
    from schemathesis.core.transport import Response as StResponse

    r = StResponse.from_any(resp)
    return StResponse(r.status_code, {k: list(v) for k, v in r.headers.items()},
                      json.dumps(body).encode(), r.request, r.elapsed, r.verify)


def checks_for(resp: Any, lines: bool) -> list[Any]:
    """The schemathesis checks for a response: no body (204, 304, an empty 200) has no
    media type to conform; an error's media type is application/json whatever the
    operation produces (dockerd's too), which check_error asserts; a stream of JSON lines
    is no one JSON document (its lines are validated one by one)."""
    checks = list(CHECKS)
    if not resp.content or resp.status_code >= 400:
        checks.remove(content_type_conformance)
    if lines and resp.status_code < 400:
        checks.remove(response_schema_conformance)
    return checks


@dataclass
class Reply:
    """A response, from schemathesis or requests: header names in lower case."""

    status_code: int
    headers: dict[str, str]
    content: bytes
    original: Any

    @property
    def text(self) -> str:
        return self.content.decode(errors="replace")

    def json(self) -> Any:
        return json.loads(self.content)


def reply_of(resp: Any) -> Reply:
    headers = {k.lower(): v[-1] if isinstance(v, list) else v for k, v in resp.headers.items()}
    return Reply(resp.status_code, headers, resp.content or b"", resp)


def check_error(resp: Reply, status: int | None = None, message: str | None = None,
                contains: str | None = None) -> str:
    """An error response as moby sends it: {"message"} and Content-Type application/json."""
    if status is not None:
        assert resp.status_code == status, (resp.status_code, resp.text)
    assert resp.status_code >= 400, (resp.status_code, resp.text)
    assert resp.headers.get("content-type") == "application/json", resp.headers
    body = resp.json()
    definition_validator("ErrorResponse").validate(body)
    assert set(body) == {"message"} and body["message"], body
    if message is not None:
        assert body["message"] == message, body
    if contains is not None:
        assert contains in body["message"], body
    return str(body["message"])


@dataclass
class Api:
    daemon: CtDaemon
    session: Any

    def call(self, method: str, path: str, *, params: dict[str, str] | None = None,
             query: dict[str, Any] | None = None, body: Any = None, media_type: str | None = None,
             headers: dict[str, str] | None = None, expect: int | None = None,
             lines: bool = False) -> Reply:
        """The operation (path, method) of the document with these values, sent to pyrtd
        by schemathesis and its response checked against the document (`lines`: a stream
        of JSON lines, whose lines the caller validates)."""
        op = SCHEMA[path][method.upper()]
        kw: dict[str, Any] = {"path_parameters": params or {}, "query": query,
                              "headers": headers}
        if body is not None:
            kw["body"] = body
            kw["media_type"] = media_type or "application/json"
        case = op.Case(**kw)
        resp = case.call(base_url=BASE, session=self.session)
        case.validate_response(without_allowed_nulls(path, resp), checks=checks_for(resp, lines))
        r = reply_of(resp)
        if expect is not None:
            assert r.status_code == expect, (method, path, r.status_code, r.text)
        if r.status_code >= 400 and method.upper() != "HEAD":
            check_error(r)
        return r

    def validate(self, method: str, path: str, resp: Reply) -> None:
        """Check a response to a request made by hand (a body no Case can hold)."""
        params = {name: "x" for name in re.findall(r"{(\w+)}", path)}
        case = SCHEMA[path][method.upper()].Case(path_parameters=params)
        case.validate_response(resp.original, checks=checks_for(resp.original, False))

    def raw(self, method: str, path: str, data: bytes | None = None,
            headers: dict[str, str] | None = None, version: str = "v1.44") -> Reply:
        url = f"http://localhost/{version}{path}" if version else f"http://localhost{path}"
        return reply_of(self.session.request(method, url, data=data, headers=headers or {},
                                             timeout=60))


@pytest.fixture(scope="module")
def api(ctdaemon: CtDaemon) -> Iterator[Api]:
    s = requests.Session()
    s.mount("http://localhost/", UnixHTTPAdapter(f"http+unix://{ctdaemon.sock}", timeout=60))
    yield Api(ctdaemon, s)
    s.close()


@pytest.fixture
def a(api: Api) -> Iterator[Api]:
    yield api
    # the daemon is alive, and no test leaves a container behind
    assert api.daemon.proc.poll() is None, api.daemon.output()[-3000:]
    left = api.raw("GET", "/containers/json?all=1").json()
    for c in left:
        api.raw("DELETE", f"/containers/{c['Id']}?force=1")
    assert [c["Names"] for c in left] == []


def uname() -> str:
    return f"oa-{uuid.uuid4().hex[:8]}"


def create(a: Api, cmd: list[str], **cfg: Any) -> str:
    r = a.call("POST", "/containers/create", query={"name": uname()},
               body={"Image": IMAGE, "Cmd": cmd, **cfg}, expect=201)
    return str(r.json()["Id"])


def json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def tar_of(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for name, data in files.items():
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


# -- system ---------------------------------------------------------------------------------


def test_system_endpoints(a: Api) -> None:
    r = a.call("GET", "/_ping", expect=200)
    assert r.text == "OK" and r.headers["api-version"] == "1.44"
    r = a.call("HEAD", "/_ping", expect=200)
    assert r.content == b""
    assert a.call("GET", "/version", expect=200).json()["ApiVersion"] == "1.44"
    info = a.call("GET", "/info", expect=200).json()
    assert info["Images"] >= 1 and info["OSType"] == "linux"
    # df with a container and an image to show, sizes on
    cid = create(a, ["true"])
    df = a.call("GET", "/system/df", expect=200).json()
    assert [c["Id"] for c in df["Containers"]] == [cid]
    assert IMAGE in df["Images"][0]["RepoTags"] and df["LayersSize"] > 0
    for kind in ("container", "image", "volume", "build-cache"):
        a.call("GET", "/system/df", query={"type": [kind]}, expect=200)
    a.call("DELETE", "/containers/{id}", params={"id": cid}, expect=204)


def test_events_lines(a: Api) -> None:
    since = f"{time.time() - 1:.9f}"
    cid = create(a, ["true"])
    a.call("POST", "/containers/{id}/start", params={"id": cid}, expect=204)
    a.call("POST", "/containers/{id}/wait", params={"id": cid}, expect=200)
    a.call("DELETE", "/containers/{id}", params={"id": cid}, expect=204)
    until = f"{time.time() + 0.5:.9f}"
    r = a.call("GET", "/events", query={"since": since, "until": until,
                                        "filters": json.dumps({"container": [cid]})},
               lines=True, expect=200)
    assert r.headers["content-type"] == "application/json"
    events = json_lines(r.text)
    v = definition_validator("EventMessage")
    for e in events:
        v.validate(e)
    assert [e["Action"] for e in events if e["Type"] == "container"][:2] == ["create", "start"]
    assert events[-1]["Action"] == "destroy" and events[-1]["Actor"]["ID"] == cid
    r = a.call("GET", "/events", query={"filters": "{bad"})
    check_error(r, 400, contains="filters")


# -- containers -----------------------------------------------------------------------------


def test_container_views_in_every_state(a: Api) -> None:
    cid = create(a, ["sh", "-c", "echo out; echo err >&2; sleep 60"],
                 Labels={"oa": "1"}, Env=["A=1"], WorkingDir="/tmp",
                 HostConfig={"RestartPolicy": {"Name": "no"}})
    p = {"id": cid}
    for state in ("created", "running", "paused", "exited"):
        if state == "running":
            a.call("POST", "/containers/{id}/start", params=p, expect=204)
        elif state == "paused":
            a.call("POST", "/containers/{id}/pause", params=p, expect=204)
        elif state == "exited":
            a.call("POST", "/containers/{id}/unpause", params=p, expect=204)
            a.call("POST", "/containers/{id}/stop", params=p, query={"t": 1}, expect=204)
        info = a.call("GET", "/containers/{id}/json", params=p, expect=200).json()
        assert info["State"]["Status"] == state
        sized = a.call("GET", "/containers/{id}/json", params=p, query={"size": True},
                       expect=200).json()
        assert sized["SizeRootFs"] >= sized["SizeRw"] >= 0
        listed = a.call("GET", "/containers/json", query={"all": True, "size": True},
                        expect=200).json()
        assert [c["State"] for c in listed if c["Id"] == cid] == [state]
        a.call("GET", "/containers/{id}/changes", params=p, expect=200)
        stats = a.call("GET", "/containers/{id}/stats", params=p,
                       query={"stream": False, "one-shot": True}, expect=200).json()
        assert stats["id"] == cid
    a.call("GET", "/containers/json", query={"filters": json.dumps({"label": ["oa=1"]}),
                                             "limit": 5}, expect=200)
    r = a.call("GET", "/containers/{id}/logs", params=p, query={"stdout": True, "stderr": True,
                                                                 "timestamps": True,
                                                                 "tail": "all"}, expect=200)
    assert b"out\n" in r.content and b"err\n" in r.content
    a.call("POST", "/containers/{id}/wait", params=p, expect=200)
    a.call("DELETE", "/containers/{id}", params=p, expect=204)


def test_container_lifecycle_operations(a: Api) -> None:
    cid = create(a, ["sleep", "60"], Tty=True, OpenStdin=True)
    p = {"id": cid}
    a.call("POST", "/containers/{id}/start", params=p, expect=204)
    a.call("POST", "/containers/{id}/start", params=p, expect=304)
    top = a.call("GET", "/containers/{id}/top", params=p, expect=200).json()
    assert "PID" in top["Titles"] and any("sleep" in " ".join(x) for x in top["Processes"])
    a.call("GET", "/containers/{id}/top", params=p, query={"ps_args": "-o pid,comm"},
           expect=200)
    a.call("POST", "/containers/{id}/resize", params=p, query={"h": 30, "w": 90}, expect=200)
    a.call("POST", "/containers/{id}/rename", params=p, query={"name": uname()}, expect=204)
    a.call("POST", "/containers/{id}/restart", params=p, query={"t": 1}, expect=204)
    a.call("POST", "/containers/{id}/kill", params=p, query={"signal": "SIGKILL"}, expect=204)
    w = a.call("POST", "/containers/{id}/wait", params=p, query={"condition": "not-running"},
               expect=200).json()
    assert w["StatusCode"] == 137
    a.call("POST", "/containers/{id}/stop", params=p, expect=304)
    # archive: HEAD stat, GET a tar, PUT a tar; export; commit
    r = a.call("HEAD", "/containers/{id}/archive", params=p, query={"path": "/bin"},
               expect=200)
    assert r.headers["x-docker-container-path-stat"]
    r = a.call("GET", "/containers/{id}/archive", params=p, query={"path": "/bin/busybox"},
               expect=200)
    assert r.headers["content-type"] == "application/x-tar" and len(r.content) > 1024
    a.call("PUT", "/containers/{id}/archive", params=p, query={"path": "/tmp"},
           body=tar_of({"put.txt": b"hi"}), media_type="application/x-tar", expect=200)
    r = a.call("GET", "/containers/{id}/export", params=p, expect=200)
    assert b"put.txt" in r.content
    r = a.call("POST", "/commit", query={"container": cid, "repo": "oa/commit", "tag": "1",
                                         "changes": "ENV C=1", "comment": "c"}, expect=201)
    image_id = r.json()["Id"]
    a.call("DELETE", "/images/{name}", params={"name": image_id}, expect=200)
    a.call("DELETE", "/containers/{id}", params=p, query={"force": True, "v": True}, expect=204)
    pruned = a.call("POST", "/containers/prune", expect=200).json()
    assert pruned["ContainersDeleted"] == [] and pruned["SpaceReclaimed"] == 0
    stopped = create(a, ["true"])
    pruned = a.call("POST", "/containers/prune",
                    query={"filters": json.dumps({"until": [str(int(time.time()) + 60)]})},
                    expect=200).json()
    assert pruned["ContainersDeleted"] == [stopped]


def test_exec_endpoints(a: Api) -> None:
    cid = create(a, ["sleep", "60"])
    a.call("POST", "/containers/{id}/start", params={"id": cid}, expect=204)
    eid = a.call("POST", "/containers/{id}/exec", params={"id": cid},
                 body={"Cmd": ["sh", "-c", "echo hi; exit 3"], "AttachStdout": True,
                       "AttachStderr": True, "Env": ["X=1"], "WorkingDir": "/tmp"},
                 expect=201).json()["Id"]
    before = a.call("GET", "/exec/{id}/json", params={"id": eid}, expect=200).json()
    assert before["Running"] is False and before["ExitCode"] is None
    # a plain (not upgraded) start: the multiplexed output, then the connection closes
    r = a.call("POST", "/exec/{id}/start", params={"id": eid}, body={"Detach": False},
               expect=200)
    assert r.headers["content-type"] == "application/vnd.docker.multiplexed-stream"
    assert r.content == b"\x01\x00\x00\x00\x00\x00\x00\x03hi\n"
    after = a.call("GET", "/exec/{id}/json", params={"id": eid}, expect=200).json()
    assert after["ExitCode"] == 3 and after["Running"] is False
    check_error(a.call("POST", "/exec/{id}/start", params={"id": eid},
                       body={"Detach": False}), 409)
    # detached, with a tty, resized while it runs
    tid = a.call("POST", "/containers/{id}/exec", params={"id": cid},
                 body={"Cmd": ["sleep", "5"], "Tty": True}, expect=201).json()["Id"]
    a.call("POST", "/exec/{id}/start", params={"id": tid}, body={"Detach": True,
                                                                  "ConsoleSize": [20, 60]},
           expect=200)
    a.call("POST", "/exec/{id}/resize", params={"id": tid}, query={"h": 25, "w": 80},
           expect=200)
    assert a.call("GET", "/exec/{id}/json", params={"id": tid},
                  expect=200).json()["Running"] is True
    a.call("DELETE", "/containers/{id}", params={"id": cid}, query={"force": True},
           expect=204)


def test_image_endpoints(a: Api, registry: Registry) -> None:
    listed = a.call("GET", "/images/json", expect=200).json()
    image_id = [i["Id"] for i in listed if IMAGE in i["RepoTags"]][0]
    for q in ({"all": True}, {"digests": True, "shared-size": True},
              {"filters": json.dumps({"reference": ["ctbb"]})},
              {"filters": json.dumps({"dangling": ["true"]})}):
        a.call("GET", "/images/json", query=q, expect=200)
    info = a.call("GET", "/images/{name}/json", params={"name": IMAGE}, expect=200).json()
    assert info["Id"] == image_id
    hist = a.call("GET", "/images/{name}/history", params={"name": image_id}, expect=200)
    assert hist.json()[0]["Id"] == image_id
    repo = f"{registry.host}/oa/bb"
    a.call("POST", "/images/{name}/tag", params={"name": IMAGE},
           query={"repo": repo, "tag": "v1"}, expect=201)
    # push and pull with their progress streams, each line as the document defines it
    auth = "e30="  # base64url of "{}"
    r = a.call("POST", "/images/{name}/push", params={"name": repo}, query={"tag": "v1"},
               headers={"X-Registry-Auth": auth}, lines=True, expect=200)
    lines = json_lines(r.text)
    v = definition_validator("PushImageInfo")
    for line in lines:
        v.validate(line)
    assert not [x for x in lines if "error" in x], lines
    a.call("DELETE", "/images/{name}", params={"name": f"{repo}:v1"}, expect=200)
    r = a.call("POST", "/images/create", query={"fromImage": repo, "tag": "v1"}, lines=True,
               expect=200)
    lines = json_lines(r.text)
    v = definition_validator("CreateImageInfo")
    for line in lines:
        v.validate(line)
    assert lines[-1]["status"].startswith("Status: Downloaded newer image")
    r = a.call("POST", "/images/create", query={"fromImage": f"{registry.host}/oa/none",
                                                "tag": "v1"})
    check_error(r, 404)
    # save one, save several, load back
    r = a.call("GET", "/images/{name}/get", params={"name": f"{repo}:v1"}, expect=200)
    saved = r.content
    with tarfile.open(fileobj=io.BytesIO(saved)) as tf:
        assert "manifest.json" in tf.getnames()
    r = a.call("GET", "/images/get", query={"names": [IMAGE, f"{repo}:v1"]}, expect=200)
    assert len(r.content) > 1024
    a.call("DELETE", "/images/{name}", params={"name": f"{repo}:v1"}, expect=200)
    r = a.call("POST", "/images/load", query={"quiet": True}, body=saved,
               media_type="application/x-tar", lines=True, expect=200)
    for line in json_lines(r.text):
        assert set(line) <= {"stream", "status", "id", "progress", "progressDetail", "error",
                             "errorDetail", "aux"}, line
    deleted = a.call("DELETE", "/images/{name}", params={"name": f"{repo}:v1"},
                     expect=200).json()
    assert deleted == [{"Untagged": f"{repo}:v1"}]
    # import from the body, then prune the dangling result
    r = a.call("POST", "/images/create", query={"fromSrc": "-", "message": "imported"},
               body=tar_of({"x": b"x"}), media_type="application/octet-stream", lines=True,
               expect=200)
    v = definition_validator("CreateImageInfo")
    for line in json_lines(r.text):
        v.validate(line)
    dangling = a.call("GET", "/images/json", query={"filters": json.dumps(
        {"dangling": ["true"]})}, expect=200).json()
    assert dangling and all(i["RepoTags"] == [] for i in dangling)
    pruned = a.call("POST", "/images/prune",
                    query={"filters": json.dumps({"dangling": ["true"]})}, expect=200).json()
    # each dangling image, then the layers only it held (as dockerd lists them)
    assert pruned["ImagesDeleted"][:len(dangling)] == [{"Deleted": i["Id"]} for i in dangling]
    assert all(set(x) == {"Deleted"} for x in pruned["ImagesDeleted"])
    assert pruned["SpaceReclaimed"] > 0
    assert a.call("POST", "/images/prune", expect=200).json() == {"ImagesDeleted": [],
                                                                  "SpaceReclaimed": 0}


def test_network_endpoints(a: Api) -> None:
    name = uname()
    third = 150 + secrets.randbelow(50)  # 10.<150-199>.77.0/24: no other test's subnet
    body = {"Name": name, "Driver": "bridge", "Labels": {"oa": "1"},
            "IPAM": {"Config": [{"Subnet": f"10.{third}.77.0/24",
                                 "Gateway": f"10.{third}.77.1"}]}}
    nid = a.call("POST", "/networks/create", body=body, expect=201).json()["Id"]
    try:
        check_error(a.call("POST", "/networks/create", body=body), 409, contains=name)
        for q in ({}, {"filters": json.dumps({"type": ["custom"]})},
                  {"filters": json.dumps({"label": ["oa=1"]})}):
            a.call("GET", "/networks", query=q, expect=200)
        for n in ("bridge", "host", "none", name):
            info = a.call("GET", "/networks/{id}", params={"id": n}, query={"verbose": True},
                          expect=200).json()
            assert info["Name"] == n
        cid = create(a, ["sleep", "60"])
        a.call("POST", "/networks/{id}/connect", params={"id": nid},
               body={"Container": cid, "EndpointConfig": {"Aliases": ["oa-alias"]}},
               expect=200)
        a.call("POST", "/containers/{id}/start", params={"id": cid}, expect=204)
        ns = a.call("GET", "/containers/{id}/json", params={"id": cid},
                    expect=200).json()["NetworkSettings"]
        assert ns["Networks"][name]["IPAddress"].startswith(f"10.{third}.77.")
        assert "oa-alias" in ns["Networks"][name]["Aliases"]
        assert cid in a.call("GET", "/networks/{id}", params={"id": nid},
                             expect=200).json()["Containers"]
        a.call("GET", "/containers/json", expect=200)
        check_error(a.call("DELETE", "/networks/{id}", params={"id": nid}), 403)
        a.call("POST", "/networks/{id}/disconnect", params={"id": nid},
               body={"Container": cid, "Force": True}, expect=200)
        a.call("DELETE", "/containers/{id}", params={"id": cid}, query={"force": True},
               expect=204)
        check_error(a.call("DELETE", "/networks/{id}", params={"id": "bridge"}), 403)
        check_error(a.call("GET", "/networks/{id}", params={"id": "no-such-net"}), 404,
                    contains="no-such-net")
        check_error(a.call("POST", "/networks/{id}/connect", params={"id": nid},
                           body={"Container": "nosuch"}), 404, "No such container: nosuch")
        r = a.raw("POST", "/networks/create", b'{"Name": ', {"Content-Type": "application/json"})
        check_error(r, 400)
        pruned = a.call("POST", "/networks/prune",
                        query={"filters": json.dumps({"label": ["oa=1"]})}, expect=200).json()
        assert pruned["NetworksDeleted"] == [name]
    finally:
        a.raw("DELETE", f"/networks/{nid}")
    check_error(a.call("DELETE", "/networks/{id}", params={"id": nid}), 404)


def test_volume_endpoints(a: Api) -> None:
    name = uname()
    vol = a.call("POST", "/volumes/create", body={"Name": name, "Labels": {"oa": "1"}},
                 expect=201).json()
    assert vol["Name"] == name and vol["Driver"] == "local"
    try:
        anon = a.call("POST", "/volumes/create", body={}, expect=201).json()["Name"]
        listed = a.call("GET", "/volumes", expect=200).json()
        assert {name, anon} <= {v["Name"] for v in listed["Volumes"]}
        a.call("GET", "/volumes", query={"filters": json.dumps({"label": ["oa=1"]})},
               expect=200)
        a.call("GET", "/volumes/{name}", params={"name": name}, expect=200)
        cid = create(a, ["sh", "-c", "echo hi > /data/f"],
                     HostConfig={"Binds": [f"{name}:/data"]})
        a.call("POST", "/containers/{id}/start", params={"id": cid}, expect=204)
        a.call("POST", "/containers/{id}/wait", params={"id": cid}, expect=200)
        mounts = a.call("GET", "/containers/{id}/json", params={"id": cid},
                        expect=200).json()["Mounts"]
        assert [m["Name"] for m in mounts] == [name]
        df = a.call("GET", "/system/df", query={"type": ["volume"]}, expect=200).json()
        assert name in {v["Name"] for v in df["Volumes"]}
        check_error(a.call("DELETE", "/volumes/{name}", params={"name": name}), 409)
        a.call("DELETE", "/containers/{id}", params={"id": cid}, expect=204)
        check_error(a.call("GET", "/volumes/{name}", params={"name": "no-such-vol"}), 404,
                    contains="no-such-vol")
        check_error(a.call("DELETE", "/volumes/{name}", params={"name": "no-such-vol"}), 404)
        r = a.raw("POST", "/volumes/create", b'{"Name": 5}', {"Content-Type": "application/json"})
        check_error(r, 400)
        pruned = a.call("POST", "/volumes/prune", expect=200).json()
        assert anon in pruned["VolumesDeleted"] and name not in pruned["VolumesDeleted"]
    finally:
        a.raw("DELETE", f"/volumes/{name}?force=1")
    check_error(a.call("DELETE", "/volumes/{name}", params={"name": name}), 404)


# -- errors ---------------------------------------------------------------------------------


def test_unknown_ids_are_404_with_moby_messages(a: Api) -> None:
    c = {"id": "nosuch"}
    for method, path, kw in (
        ("GET", "/containers/{id}/json", {}), ("GET", "/containers/{id}/top", {}),
        ("GET", "/containers/{id}/logs", {"query": {"stdout": True}}),
        ("GET", "/containers/{id}/changes", {}), ("GET", "/containers/{id}/export", {}),
        ("GET", "/containers/{id}/stats", {"query": {"stream": False}}),
        ("POST", "/containers/{id}/resize", {"query": {"h": 1, "w": 1}}),
        ("POST", "/containers/{id}/start", {}), ("POST", "/containers/{id}/stop", {}),
        ("POST", "/containers/{id}/restart", {}), ("POST", "/containers/{id}/kill", {}),
        ("POST", "/containers/{id}/rename", {"query": {"name": "x"}}),
        ("POST", "/containers/{id}/pause", {}), ("POST", "/containers/{id}/unpause", {}),
        ("POST", "/containers/{id}/attach", {"query": {"stream": True, "stdout": True}}),
        ("POST", "/containers/{id}/wait", {}), ("DELETE", "/containers/{id}", {}),
        ("GET", "/containers/{id}/archive", {"query": {"path": "/"}}),
        ("PUT", "/containers/{id}/archive", {"query": {"path": "/"},
                                             "body": tar_of({"a": b"a"}),
                                             "media_type": "application/x-tar"}),
        ("POST", "/containers/{id}/exec", {"body": {"Cmd": ["true"]}}),
    ):
        r = a.call(method, path, params=c, **kw)
        check_error(r, 404, "No such container: nosuch")
    r = a.call("HEAD", "/containers/{id}/archive", params=c, query={"path": "/"})
    assert r.status_code == 404  # HEAD: no body
    r = a.call("POST", "/commit", query={"container": "nosuch"}, body={})
    check_error(r, 404, "No such container: nosuch")
    e = {"id": "nosuch"}
    for method, path, kw in (("GET", "/exec/{id}/json", {}),
                             ("POST", "/exec/{id}/start", {"body": {"Detach": True}}),
                             ("POST", "/exec/{id}/resize", {"query": {"h": 1, "w": 1}})):
        check_error(a.call(method, path, params=e, **kw), 404,
                    "No such exec instance: nosuch")
    i = {"name": "no/such:1"}
    for method, path, kw in (("GET", "/images/{name}/json", {}),
                             ("GET", "/images/{name}/history", {}),
                             ("GET", "/images/{name}/get", {}),
                             ("DELETE", "/images/{name}", {}),
                             ("POST", "/images/{name}/tag", {"query": {"repo": "x/y"}}),
                             ):
        check_error(a.call(method, path, params=i, **kw), 404, "No such image: no/such:1")
    r = a.call("POST", "/images/{name}/push", params=i, headers={"X-Registry-Auth": "e30="})
    check_error(r, 404, "An image does not exist locally with the tag: no/such")
    r = a.call("POST", "/containers/create", body={"Image": "no/such:1"})
    check_error(r, 404, "No such image: no/such:1")
    r = a.call("GET", "/images/get", query={"names": ["no/such:1"]})
    check_error(r, 404, "No such image: no/such:1")


def test_conflicts_are_409(a: Api) -> None:
    name = uname()
    cid = a.call("POST", "/containers/create", query={"name": name},
                 body={"Image": IMAGE, "Cmd": ["sleep", "60"]}, expect=201).json()["Id"]
    p = {"id": cid}
    r = a.call("POST", "/containers/create", query={"name": name},
               body={"Image": IMAGE, "Cmd": ["true"]})
    check_error(r, 409, f'Conflict. The container name "/{name}" is already in use by '
                        f'container "{cid}". You have to remove (or rename) that container '
                        f"to be able to reuse that name.")
    check_error(a.call("POST", "/containers/{id}/kill", params=p), 409,
                f"Container {cid} is not running")
    check_error(a.call("POST", "/containers/{id}/pause", params=p), 409)
    check_error(a.call("POST", "/containers/{id}/exec", params=p, body={"Cmd": ["true"]}),
                409)
    other = create(a, ["true"])
    check_error(a.call("POST", "/containers/{id}/rename", params={"id": other},
                       query={"name": name}), 409, contains="is already in use")
    a.call("POST", "/containers/{id}/start", params=p, expect=204)
    check_error(a.call("DELETE", "/containers/{id}", params=p), 409,
                contains="Stop the container before attempting removal or force remove")
    a.call("POST", "/containers/{id}/pause", params=p, expect=204)
    check_error(a.call("POST", "/containers/{id}/pause", params=p), 409,
                contains="is already paused")
    check_error(a.call("POST", "/containers/{id}/exec", params=p, body={"Cmd": ["true"]}),
                409, contains="is paused")
    a.call("POST", "/containers/{id}/unpause", params=p, expect=204)
    check_error(a.call("POST", "/containers/{id}/unpause", params=p), 409,
                f"Container {cid} is not paused")
    image_id = a.call("GET", "/images/{name}/json", params={"name": IMAGE}).json()["Id"]
    check_error(a.call("DELETE", "/images/{name}", params={"name": image_id}), 409,
                contains="conflict: unable to delete")
    for c in (cid, other):
        a.call("DELETE", "/containers/{id}", params={"id": c}, query={"force": True},
               expect=204)


def test_bad_bodies_types_and_values_are_400(a: Api) -> None:
    cid = create(a, ["sleep", "60"])
    # malformed JSON, and JSON that is not an object, on each JSON-body endpoint
    for path, kw in (("/containers/create", {}), ("/containers/{id}/exec", {"id": cid}),
                     ("/commit?container=" + cid, {})):
        for raw in (b'{"Image": ', b"[1, 2]", b'"text"', b"\xff\xfe"):
            url = path.format(**kw) if kw else path
            r = a.raw("POST", url, raw, {"Content-Type": "application/json"})
            check_error(r, 400)
            a.validate("POST", path.split("?")[0], r)
    r = a.raw("POST", "/containers/create", b'{"Image": ', {"Content-Type": "application/json"})
    check_error(r, 400, contains="malformed JSON")
    # wrong types in the body
    for body, field in (({"Image": IMAGE, "Tty": "yes"}, "Tty"),
                        ({"Image": IMAGE, "Cmd": 5}, "Cmd"),
                        ({"Image": IMAGE, "Env": "A=1"}, "Env"),
                        ({"Image": IMAGE, "Labels": ["a"]}, "Labels"),
                        ({"Image": IMAGE, "HostConfig": {"Memory": "lots"}}, "Memory"),
                        ({"Image": IMAGE, "HostConfig": {"Binds": "/a:/b"}}, "Binds"),
                        ({"Image": IMAGE, "HostConfig": []}, "HostConfig"),
                        ({"Image": 7}, "Image")):
        r = a.raw("POST", "/containers/create", json.dumps(body).encode(),
                  {"Content-Type": "application/json"})
        check_error(r, 400, contains=field)
    r = a.raw("POST", f"/containers/{cid}/exec", json.dumps({"Cmd": "nolist"}).encode(),
              {"Content-Type": "application/json"})
    check_error(r, 400)
    # a user that str.isdigit takes for a number: a name no passwd has, not a crash
    r = a.raw("POST", "/containers/create", json.dumps({"Image": IMAGE, "User": "\u00b9"})
              .encode(), {"Content-Type": "application/json"})
    check_error(r, 400, "unable to find user \u00b9: no matching entries in passwd file")
    # bad query values
    for method, url, field in (("GET", "/containers/json?all=maybe", "all"),
                               ("GET", "/containers/json?limit=x", "limit"),
                               ("GET", "/containers/json?filters=%7Bx", "filters"),
                               ("GET", "/images/json?all=2", "all"),
                               ("POST", f"/containers/{cid}/stop?t=soon", "t"),
                               ("POST", f"/containers/{cid}/kill?signal=NOPE", "NOPE"),
                               # a digit to str.isdigit, not to int()
                               ("POST", f"/containers/{cid}/kill?signal=%C2%B3", "signal"),
                               ("POST", f"/containers/{cid}/stop?signal=1%C2%B3", "signal"),
                               ("POST", f"/containers/{cid}/wait?condition=never", "never"),
                               ("POST", f"/containers/{cid}/resize?h=-1&w=3", "h"),
                               ("GET", f"/containers/{cid}/logs", "stream"),
                               ("GET", f"/containers/{cid}/archive", "path"),
                               ("POST", "/containers/create?name=bad%20name", "name"),
                               ("POST", "/images/create", "fromImage"),
                               ("POST", "/commit", "container")):
        body = json.dumps({"Image": IMAGE}).encode() if method == "POST" else None
        r = a.raw(method, url, body, {"Content-Type": "application/json"})
        check_error(r, 400, contains=field)
    a.call("DELETE", "/containers/{id}", params={"id": cid}, query={"force": True},
           expect=204)


def test_versions_routes_and_huge_bodies(a: Api) -> None:
    r = a.raw("GET", "/version", version="v1.45")
    check_error(r, 400, "client version 1.45 is too new. Maximum supported API version is "
                        "1.44")
    r = a.raw("GET", "/version", version="v1.23")
    check_error(r, 400, "client version 1.23 is too old. Minimum supported API version is "
                        "1.24, please upgrade your client to a newer version")
    for version in ("v1.24", "v1.41", "v1.44", ""):
        assert a.raw("GET", "/_ping", version=version).status_code == 200
    for method, path in (("GET", "/nope"), ("POST", "/version"), ("GET", "/containers"),
                         ("PUT", "/images/json")):
        check_error(a.raw(method, path), 404, "page not found")
    check_error(a.raw("GET", "/v1.x/version", version=""), 404, "page not found")
    # a body over the limit is refused before it is read; the daemon goes on serving
    status, headers, body = raw_exchange(a, b"POST /v1.44/containers/create HTTP/1.1\r\n"
                                            b"Host: x\r\nContent-Type: application/json\r\n"
                                            b"Content-Length: 4294967296\r\n\r\n{")
    assert status == 413 and headers["Content-Type"] == "application/json"
    assert json.loads(body)["message"].startswith("request body too large")
    # a body that ends before its Content-Length, and a client that leaves mid-request
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(str(a.daemon.sock))
    s.sendall(b"POST /v1.44/containers/create HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n"
              b"\r\n{\"Image\"")
    s.close()
    assert a.call("GET", "/_ping", expect=200).text == "OK"


def raw_exchange(a: Api, data: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send bytes as they are; (status, headers, body) of the answer, read to its end."""
    s = raw_request(a.daemon, "")
    try:
        s.sendall(data)
        head, body = read_head(s)
        lines = head.decode().split("\r\n")
        assert lines[0].startswith("HTTP/1.1 "), lines[0]
        headers = dict(line.split(": ", 1) for line in lines[1:])
        while len(body) < int(headers.get("Content-Length", "0")):
            chunk = s.recv(65536)
            assert chunk
            body += chunk
        return int(lines[0].split()[1]), headers, body
    finally:
        s.close()


def test_malformed_http_gets_json_errors(a: Api) -> None:
    pid = a.daemon.proc.pid
    fds, threads = len(os.listdir(f"/proc/{pid}/fd")), len(os.listdir(f"/proc/{pid}/task"))
    create = b"POST /v1.44/containers/create HTTP/1.1\r\nHost: x\r\n"
    for data, status in (
        (b"garbage\r\n\r\n", 400),
        (b"GET\r\n\r\n", 400),
        (b"GET /_ping HTTP/9.9\r\n\r\n", 505),
        (create + b"Content-Length: abc\r\n\r\n", 400),
        (create + b"Content-Length: -5\r\n\r\n", 400),
        (create + b"Transfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n", 400),
        (b"GET /_ping HTTP/1.1\r\nX-Long: " + b"a" * 70000 + b"\r\n\r\n", 431),
        (b"GET /_ping HTTP/1.1\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(200))
         + b"\r\n", 431),
        (b"GET /" + b"a" * 70000 + b" HTTP/1.1\r\n\r\n", 414),
        (b"GET /v1.44/containers/json?filters=%ZZ HTTP/1.1\r\nConnection: close\r\n\r\n",
         400),
    ):
        got, headers, body = raw_exchange(a, data)
        assert got == status, (data[:60], got, body)
        assert headers["Content-Type"] == "application/json", headers
        message = json.loads(body)["message"]
        assert isinstance(message, str) and message
    # clients that leave mid-request: headers cut, a body cut, a TLS hello on the socket
    for data in (b"GET /_ping HTTP/1.1\r\nHost:", create + b"Content-Length: 10\r\n\r\n{",
                 b"\x16\x03\x01\x00\xa5\x01\x00\x00"):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(str(a.daemon.sock))
        s.sendall(data)
        s.close()
    deadline = time.monotonic() + 10
    while (len(os.listdir(f"/proc/{pid}/fd")) > fds + 2
           or len(os.listdir(f"/proc/{pid}/task")) > threads + 2):
        assert time.monotonic() < deadline, "pyrtd kept the connections' fds or threads"
        time.sleep(0.1)
    assert a.call("GET", "/_ping", expect=200).text == "OK"


# -- generated requests ----------------------------------------------------------------------

# Operations that cannot change anything or reach a registry, with any generated values
# (ids and names that do not exist, odd filters and flags): a response as the document
# says, or an error as moby's, never a 5xx.
SAFE_OPERATIONS = (
    ("GET", "/containers/json"), ("GET", "/containers/{id}/json"),
    ("GET", "/containers/{id}/top"), ("GET", "/containers/{id}/changes"),
    ("GET", "/images/json"), ("GET", "/images/{name}/json"), ("GET", "/images/{name}/history"),
    ("GET", "/exec/{id}/json"), ("GET", "/info"), ("GET", "/version"), ("GET", "/system/df"),
    ("POST", "/containers/{id}/kill"), ("POST", "/containers/{id}/exec"),
    ("POST", "/exec/{id}/resize"), ("POST", "/containers/create"),
    ("GET", "/networks"), ("GET", "/networks/{id}"), ("GET", "/volumes"),
    ("GET", "/volumes/{name}"),
)


@pytest.mark.parametrize(("method", "path"), SAFE_OPERATIONS,
                         ids=[f"{m} {p}" for m, p in SAFE_OPERATIONS])
def test_generated_requests(a: Api, method: str, path: str) -> None:
    op = SCHEMA[path][method]

    @given(case=op.as_strategy())
    @settings(max_examples=25, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    def run(case: Any) -> None:
        if path == "/containers/create":
            # never an image that exists: nothing is created
            body = case.body if isinstance(case.body, dict) else {}
            if str(body.get("Image", "")).startswith(("ctbb", "sha256:")):
                return
        resp = case.call(base_url=BASE, session=a.session)
        case.validate_response(resp, checks=checks_for(resp, False))
        r = reply_of(resp)
        if r.status_code >= 400:
            check_error(r)
        assert r.status_code < 500, r.text

    run()
    assert a.raw("GET", "/_ping").text == "OK"
    assert a.daemon.proc.poll() is None


def test_daemon_never_died(api: Api) -> None:
    """Last: everything above ran against one daemon, which still serves, holds no
    container (each test removed its own), and whose fds and threads do not grow with
    more requests, each on a connection of its own (a thread each in pyrtd)."""
    assert api.daemon.proc.poll() is None
    assert api.raw("GET", "/containers/json?all=1").json() == []
    query = urllib.parse.urlencode({"filters": json.dumps({"dangling": ["true"]})})
    assert api.raw("GET", f"/images/json?{query}").json() == []
    pid = api.daemon.proc.pid

    def counts() -> tuple[int, int]:
        return len(os.listdir(f"/proc/{pid}/fd")), len(os.listdir(f"/proc/{pid}/task"))

    fds, threads = counts()
    for _ in range(40):
        for path in ("/info", "/containers/json?all=1", "/images/json", "/containers/x/json"):
            api.raw("GET", path, headers={"Connection": "close"})
    deadline = time.monotonic() + 10
    while True:
        now = counts()
        if now[0] <= fds + 2 and now[1] <= threads + 2:
            break
        assert time.monotonic() < deadline, f"fds, threads: {(fds, threads)} -> {now}"
        time.sleep(0.1)
