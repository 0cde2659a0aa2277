from __future__ import annotations

import threading
import time

import pytest

from pyrt.errors import InvalidArgument
from pyrt.events import EventBus, matches


def test_event_shape() -> None:
    bus = EventBus()
    ev = bus.publish("container", "die", "a" * 64, {"name": "web", "image": "busybox",
                                                    "exitCode": "3"})  # fmt: skip
    assert ev["Type"] == "container" and ev["Action"] == "die"
    assert ev["Actor"] == {"ID": "a" * 64, "Attributes": {"name": "web", "image": "busybox",
                                                           "exitCode": "3"}}  # fmt: skip
    assert ev["scope"] == "local"
    assert ev["time"] == ev["timeNano"] // 1_000_000_000
    assert ev["status"] == "die" and ev["id"] == "a" * 64 and ev["from"] == "busybox"
    ev2 = bus.publish("image", "pull", "busybox:latest")
    assert ev2["timeNano"] > ev["timeNano"]


def test_subscribe_filters_and_order() -> None:
    bus = EventBus()
    sub = bus.subscribe(filters={"type": ["container"], "event": ["start", "die"]})
    bus.publish("container", "create", "c1", {"name": "one"})
    bus.publish("container", "start", "c1", {"name": "one"})
    bus.publish("image", "pull", "busybox")
    bus.publish("container", "die", "c1", {"name": "one", "exitCode": "0"})
    got = [sub.get(timeout=1) for _ in range(2)]
    assert [e["Action"] for e in got if e] == ["start", "die"]
    with pytest.raises(TimeoutError):
        sub.get(timeout=0.05)
    sub.close()
    assert sub.get(timeout=0.1) is None


def test_filter_semantics() -> None:
    ev = {"Type": "container", "Action": "health_status: healthy",
          "Actor": {"ID": "abcdef" + "0" * 58,
                    "Attributes": {"name": "web", "image": "busybox:latest", "tier": "front"}}}
    assert matches(ev, {"event": ["health_status"]})
    assert matches(ev, {"container": ["web"]}) and matches(ev, {"container": ["/web"]})
    assert matches(ev, {"container": ["abcdef"]})
    assert not matches(ev, {"container": ["other"]})
    assert matches(ev, {"image": ["busybox"]}) and matches(ev, {"image": ["busybox:latest"]})
    assert matches(ev, {"label": ["tier"]}) and matches(ev, {"label": ["tier=front"]})
    assert not matches(ev, {"label": ["tier=back"]})
    assert matches(ev, {"type": ["container", "image"], "label": ["tier"]})
    assert not matches(ev, {"type": ["image"]})


def test_since_replays_history_and_until_ends() -> None:
    bus = EventBus(history=3)
    t0 = time.time()
    for i in range(5):
        bus.publish("container", "create", f"c{i}")
    t1 = time.time()
    sub = bus.subscribe(since=t0, until=t1 + 0.001)
    ids = [e["Actor"]["ID"] for e in sub]
    assert ids == ["c2", "c3", "c4"]  # the history keeps 3


def test_blocking_iteration_across_threads() -> None:
    bus = EventBus()
    sub = bus.subscribe()
    got: list[str] = []

    def reader() -> None:
        for ev in sub:
            got.append(ev["Action"])

    t = threading.Thread(target=reader)
    t.start()
    bus.publish("container", "start", "x")
    bus.publish("container", "stop", "x")
    time.sleep(0.05)
    bus.close()
    t.join(timeout=2)
    assert not t.is_alive() and got == ["start", "stop"]


@pytest.mark.parametrize("filters", [{"nope": ["x"]}, {"type": ["martian"]}, {"event": [1]}])
def test_bad_filters(filters: dict[str, list[object]]) -> None:
    with pytest.raises(InvalidArgument, match="events"):
        EventBus().subscribe(filters=filters)  # type: ignore[arg-type]


def test_bad_times() -> None:
    with pytest.raises(InvalidArgument, match="since"):
        EventBus().subscribe(since="yesterday")
    with pytest.raises(InvalidArgument, match="until must not be before since"):
        EventBus().subscribe(since=10, until=5)
    with pytest.raises(InvalidArgument):
        EventBus().publish("martian", "x", "y")
