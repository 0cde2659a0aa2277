"""pyrt.config (daemon.json) and pyrtd's flag handling (no daemon started)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from pyrt.config import AddressPool, DaemonConfig, load_file, merge, parse
from pyrt.daemon import JSONFormatter, build_parser, resolve_config
from pyrt.errors import InvalidArgument


def test_defaults() -> None:
    cfg = DaemonConfig()
    assert cfg.live_restore is True and cfg.data_root == "/var/lib/pyrt"
    assert cfg.listen == ["unix:///run/pyrt/pyrt.sock"]
    assert cfg.pid_path == "/run/pyrt/pyrtd.pid"


def test_parse_all_keys(tmp_path: Path) -> None:
    raw = {"data-root": "/srv/pyrt", "exec-root": "/run/p", "hosts": ["unix:///x.sock"],
           "registry-mirrors": ["https://mirror.example:5000/"],
           "insecure-registries": ["reg.local:5000", "10.0.0.0/8"],
           "default-address-pools": [{"base": "10.10.0.0/16", "size": 24}],
           "log-driver": "json-file", "log-opts": {"max-size": "10m"},
           "live-restore": False, "log-level": "debug", "pidfile": "/run/p/x.pid"}
    p = tmp_path / "daemon.json"
    p.write_text(json.dumps(raw))
    cfg, keys = load_file(str(p))
    assert keys == set(raw)
    assert cfg.data_root == "/srv/pyrt" and cfg.registry_mirrors == [
        "https://mirror.example:5000"]
    assert cfg.default_address_pools == [AddressPool("10.10.0.0/16", 24)]
    assert cfg.live_restore is False and cfg.log_opts == {"max-size": "10m"}
    assert cfg.pid_path == "/run/p/x.pid"


@pytest.mark.parametrize("raw,match", [
    ({"bogus": 1}, "don't match any configuration option: bogus"),
    ({"data-root": "rel/path"}, "'data-root' must be an absolute path"),
    ({"registry-mirrors": ["mirror.example"]}, "invalid mirror"),
    ({"registry-mirrors": ["https://m.example/v2/x"]}, "without a path"),
    ({"insecure-registries": ["http://r"]}, "without a scheme"),
    ({"insecure-registries": ["10.0.0.0/33"]}, "not a valid CIDR"),
    ({"default-address-pools": [{"base": "10.0.0.0/16"}]}, "'base' and 'size'"),
    ({"default-address-pools": [{"base": "10.0.0.0/16", "size": 8}]}, "between"),
    ({"default-address-pools": [{"base": "10.0.0.1/16", "size": 24}]}, "base"),
    ({"live-restore": "yes"}, "'live-restore' must be true or false"),
    ({"log-level": "loud"}, "log-level"),
    ({"hosts": ["http://x"]}, "expected unix"),
    ({"log-opts": {"max-size": 10}}, "log-opts"),
])
def test_bad_values_name_the_key(raw: dict[str, object], match: str) -> None:
    with pytest.raises(InvalidArgument, match=match):
        parse(raw)


def test_file_errors(tmp_path: Path) -> None:
    assert load_file(str(tmp_path / "missing.json"))[1] == set()
    with pytest.raises(InvalidArgument, match="no such file"):
        load_file(str(tmp_path / "missing.json"), missing_ok=False)
    bad = tmp_path / "bad.json"
    bad.write_text("{nope")
    with pytest.raises(InvalidArgument, match="not valid JSON"):
        load_file(str(bad))


def test_merge_flags_over_file_and_conflicts() -> None:
    file_cfg, keys = parse({"registry-mirrors": ["https://m.example"]})
    cfg = merge(file_cfg, keys, {"data-root": "/d", "insecure-registries": ["r:5000"]})
    assert cfg.data_root == "/d" and cfg.insecure_registries == ["r:5000"]
    assert cfg.registry_mirrors == ["https://m.example"]
    with pytest.raises(InvalidArgument, match="specified both as a flag and in the "
                                              "configuration file: registry-mirrors"):
        merge(file_cfg, keys, {"registry-mirrors": ["https://other.example"]})


def test_flags(tmp_path: Path) -> None:
    cfgfile = tmp_path / "daemon.json"
    cfgfile.write_text('{"log-level": "warn"}')
    ns = build_parser().parse_args([
        "--data-root", str(tmp_path / "root"), "--exec-root", str(tmp_path / "run"),
        "-H", "unix:///tmp/x.sock", "-H", "unix:///tmp/y.sock",
        "--registry-mirror", "https://a.example", "--insecure-registry", "r1:5000",
        "--insecure-registry", "r2", "--live-restore=false", "--config-file", str(cfgfile)])
    cfg = resolve_config(ns)
    assert cfg.hosts == ["unix:///tmp/x.sock", "unix:///tmp/y.sock"]
    assert cfg.insecure_registries == ["r1:5000", "r2"] and cfg.live_restore is False
    assert cfg.log_level == "warn" and cfg.data_root == str(tmp_path / "root")
    ns = build_parser().parse_args(["-H", "tcp://127.0.0.1:2376", "--config-file",
                                    str(cfgfile)])
    with pytest.raises(InvalidArgument, match="without mutual TLS"):
        resolve_config(ns)
    ns = build_parser().parse_args(["-H", "tcp://127.0.0.1:2376", "--tlsverify",
                                    "--tlscacert", "ca", "--tlscert", "c", "--tlskey", "k",
                                    "--config-file", str(cfgfile)])
    assert resolve_config(ns).hosts == ["tcp://127.0.0.1:2376"]


def test_json_log_lines() -> None:
    rec = logging.LogRecord("pyrt.daemon", logging.INFO, __file__, 1, "hello %s", ("x",),
                            None)
    rec.fields = {"path": "/tmp/s"}
    line = json.loads(JSONFormatter().format(rec))
    assert line["msg"] == "hello x" and line["level"] == "info" and line["path"] == "/tmp/s"
