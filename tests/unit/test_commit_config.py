"""A commit request's config body: checked field by field, then merged under the
container's config as moby does (pyrt.containers.commit_config)."""

from __future__ import annotations

from typing import Any

import pytest

from pyrt.containers.commit_config import merge_commit_config, parse_commit_config
from pyrt.errors import InvalidArgument
from pyrt.images.importer import apply_changes

CONTAINER: dict[str, Any] = {
    "User": "app", "WorkingDir": "/srv", "Env": ["PATH=/bin", "MODE=prod"],
    "Cmd": ["serve"], "Entrypoint": ["/bin/app"], "Labels": {"team": "a", "tier": "web"},
    "ExposedPorts": {"80/tcp": {}}, "Volumes": {"/data": {}}, "StopSignal": "SIGINT",
    "Healthcheck": {"Test": ["CMD", "true"], "Interval": 5_000_000_000, "Retries": 3},
}


def test_no_body_is_no_config() -> None:
    assert parse_commit_config(None) == {}


def test_container_only_fields_are_dropped_and_nulls_are_unset() -> None:
    body = {"Hostname": "h", "Tty": True, "Image": "busybox", "AttachStdout": True,
            "Cmd": "echo hi", "User": None, "ExposedPorts": {"53/udp": {}}}
    assert parse_commit_config(body) == {"Cmd": ["echo hi"], "ExposedPorts": {"53/udp": {}}}


@pytest.mark.parametrize(("body", "text"), [
    ([], "expected a JSON object"),
    ({"Bogus": 1}, "unknown field 'Bogus'"),
    ({"Cmd": 5}, "Cmd: expected a list of strings"),
    ({"Env": ["A=1", 2]}, "Env: expected a list of strings"),
    ({"User": 0}, "User: expected a string"),
    ({"Labels": {"a": 1}}, "Labels: expected an object of strings"),
    ({"Volumes": ["/v"]}, "Volumes: expected an object"),
    ({"ArgsEscaped": "yes"}, "ArgsEscaped: expected true or false"),
    ({"Healthcheck": {"Retries": -1}}, "Healthcheck.Retries: expected a non-negative"),
    ({"Healthcheck": {"Test": ["CMD", "x"], "Every": 1}}, "unknown field 'Every'"),
])
def test_bad_bodies_name_the_field(body: Any, text: str) -> None:
    with pytest.raises(InvalidArgument, match=text):
        parse_commit_config(body)


def test_what_the_body_leaves_unset_comes_from_the_container() -> None:
    out = merge_commit_config(parse_commit_config({"Cmd": ["debug"]}), CONTAINER)
    assert out["Cmd"] == ["debug"] and out["Entrypoint"] == ["/bin/app"]
    assert out["User"] == "app" and out["WorkingDir"] == "/srv"
    assert out["Env"] == ["PATH=/bin", "MODE=prod"] and out["StopSignal"] == "SIGINT"
    assert out["Healthcheck"] == CONTAINER["Healthcheck"]


def test_body_entries_win_and_the_container_adds_its_others() -> None:
    body = parse_commit_config({"Env": ["MODE=dev", "X=1"], "Labels": {"tier": "db"},
                                "ExposedPorts": {"53/udp": {}}, "Volumes": {"/v": {}},
                                "Healthcheck": {"Retries": 9}})
    out = merge_commit_config(body, CONTAINER)
    assert out["Env"] == ["MODE=dev", "X=1", "PATH=/bin"]
    assert out["Labels"] == {"team": "a", "tier": "db"}
    assert out["ExposedPorts"] == {"80/tcp": {}, "53/udp": {}}
    assert out["Volumes"] == {"/data": {}, "/v": {}}
    assert out["Healthcheck"] == {"Test": ["CMD", "true"], "Interval": 5_000_000_000,
                                  "Retries": 9}


def test_entrypoint_rule() -> None:
    # an Entrypoint in the body: the container's Cmd is not inherited
    out = merge_commit_config(parse_commit_config({"Entrypoint": ["/bin/sh"]}), CONTAINER)
    assert out["Entrypoint"] == ["/bin/sh"] and "Cmd" not in out
    # an empty Entrypoint drops the container's; its Cmd stays
    out = merge_commit_config(parse_commit_config({"Entrypoint": []}), CONTAINER)
    assert "Entrypoint" not in out and out["Cmd"] == ["serve"]


def test_changes_apply_to_the_body_before_the_merge() -> None:
    body = parse_commit_config({"Env": ["A=1"], "Cmd": ["one"]})
    out = merge_commit_config(apply_changes(["ENV A=2", "CMD [\"two\"]"], body), CONTAINER)
    assert out["Env"] == ["A=2", "PATH=/bin", "MODE=prod"] and out["Cmd"] == ["two"]
