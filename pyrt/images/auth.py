"""Registry credentials in docker's ~/.docker/config.json, and login / logout.

The file's `auths` map holds {"<key>": {"auth": base64("user:password")}}. Keys are the
ones docker writes: "https://index.docker.io/v1/" for Docker Hub, "host[:port]" for any
other registry; when reading, a key with a scheme or a path ("https://host:5000/v1/") also
matches its host. `DOCKER_CONFIG` names the directory, as for docker. Writes keep every
other key of the file, are atomic (temp file, fsync, rename) and leave the file mode 0600.

Credential helpers (`credsStore`, `credHelpers`) are not run by pyrt. Reading ignores them
with a warning (logged once per file and host) and uses the inline `auths` entries only;
`login` and `logout` refuse, with FailedPrecondition, when a helper is configured for the
host, since docker itself would then keep the credentials in the helper, not in the file.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import logging
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pyrt.errors import FailedPrecondition, InvalidArgument

log = logging.getLogger(__name__)

DOCKER_HUB_KEY = "https://index.docker.io/v1/"
_HUB_NAMES = frozenset(
    {"docker.io", "index.docker.io", "registry-1.docker.io", "registry.hub.docker.com"}
)
_warned: set[tuple[str, str]] = set()


def default_config_path() -> Path:
    """$DOCKER_CONFIG/config.json, else ~/.docker/config.json."""
    base = os.environ.get("DOCKER_CONFIG")
    if base:
        return Path(base) / "config.json"
    return Path.home() / ".docker" / "config.json"


def _strip(key: str) -> str:
    """"https://host:5000/v1/" -> "host:5000"."""
    k = key.strip()
    if "://" in k:
        k = k.split("://", 1)[1]
    return k.split("/", 1)[0].lower()


def config_key(host: str) -> str:
    """The `auths` key docker uses for a registry domain."""
    h = _strip(host)
    if not h:
        raise InvalidArgument(f"registry host {host!r}: empty")
    return DOCKER_HUB_KEY if h in _HUB_NAMES else h


def _matches(key: str, host: str) -> bool:
    want = config_key(host)
    if key == want:
        return True
    k = _strip(key)
    if want == DOCKER_HUB_KEY:
        return k in _HUB_NAMES
    return k == want.lower()


class CredentialStore:
    """The `auths` of one docker config file."""

    def __init__(self, path: Path | str | None = None) -> None:
        self.path = Path(path) if path is not None else default_config_path()

    def _load(self) -> dict[str, Any]:
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return {}
        except OSError as e:
            raise FailedPrecondition(f"docker config {self.path}: cannot read: {e}") from e
        if not raw.strip():
            return {}
        try:
            doc = json.loads(raw)
        except ValueError as e:
            raise InvalidArgument(f"docker config {self.path}: not valid JSON: {e}") from e
        if not isinstance(doc, dict):
            raise InvalidArgument(f"docker config {self.path}: expected a JSON object")
        auths = doc.get("auths", {})
        if not isinstance(auths, dict):
            raise InvalidArgument(f"docker config {self.path}: 'auths' must be an object")
        return doc

    def _helper(self, doc: dict[str, Any], host: str) -> str | None:
        """The credential helper docker would use for `host`, if any."""
        helpers = doc.get("credHelpers")
        if isinstance(helpers, dict):
            for key, name in helpers.items():
                if isinstance(key, str) and _matches(key, host) and name:
                    return f"credHelpers[{key!r}] = {name!r}"
        store = doc.get("credsStore")
        if isinstance(store, str) and store:
            return f"credsStore = {store!r}"
        return None

    def get(self, host: str) -> tuple[str, str] | None:
        """(user, password) for a registry domain, or None."""
        doc = self._load()
        helper = self._helper(doc, host)
        if helper is not None and (str(self.path), host) not in _warned:
            _warned.add((str(self.path), host))
            log.warning(
                "%s sets %s; pyrt does not run credential helpers and uses only the "
                "inline 'auths' entries for %s",
                self.path, helper, host,
            )
        auths: dict[str, Any] = doc.get("auths", {})
        exact = config_key(host)
        keys = [exact] if exact in auths else []
        keys += sorted(k for k in auths if k != exact and _matches(k, host))
        for key in keys:
            entry = auths[key]
            if not isinstance(entry, dict):
                continue
            creds = _decode_entry(entry, key, self.path)
            if creds is not None:
                return creds
        return None

    def lookup(self) -> Callable[[str], tuple[str, str] | None]:
        """A `credentials_lookup` for RegistryClient."""
        return self.get

    def hosts(self) -> list[str]:
        return sorted(self._load().get("auths", {}))

    def store(self, host: str, user: str, password: str) -> str:
        """Save credentials; returns the key written."""
        if not user or ":" in user:
            raise InvalidArgument(f"username {user!r}: must be non-empty, without ':'")
        if not password:
            raise InvalidArgument("password: must be non-empty")
        doc = self._load()
        self._refuse_helper(doc, host, "store credentials")
        key = config_key(host)
        auths: dict[str, Any] = doc.setdefault("auths", {})
        for k in [k for k in auths if k != key and _matches(k, host)]:
            del auths[k]
        entry = auths.get(key) if isinstance(auths.get(key), dict) else {}
        assert isinstance(entry, dict)
        entry.pop("identitytoken", None)
        entry["auth"] = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
        auths[key] = entry
        self._write(doc)
        return key

    def erase(self, host: str) -> bool:
        """Remove the credentials for `host`; False when there were none."""
        doc = self._load()
        self._refuse_helper(doc, host, "remove credentials")
        auths: dict[str, Any] = doc.get("auths", {})
        keys = [k for k in auths if _matches(k, host)]
        if not keys:
            return False
        for k in keys:
            del auths[k]
        self._write(doc)
        return True

    def _refuse_helper(self, doc: dict[str, Any], host: str, what: str) -> None:
        helper = self._helper(doc, host)
        if helper is not None:
            raise FailedPrecondition(
                f"cannot {what} for {host}: {self.path} sets {helper} and pyrt does not "
                "run credential helpers; remove that setting or use docker login"
            )

    def _write(self, doc: dict[str, Any]) -> None:
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        data = (json.dumps(doc, indent="\t") + "\n").encode()
        fd, tmp = tempfile.mkstemp(prefix=".config.json.", dir=self.path.parent)
        try:
            os.fchmod(fd, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        dfd = os.open(self.path.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)


def _decode_entry(entry: dict[str, Any], key: str, path: Path) -> tuple[str, str] | None:
    auth = entry.get("auth")
    if isinstance(auth, str) and auth:
        try:
            text = base64.b64decode(auth, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError) as e:
            raise InvalidArgument(f"docker config {path}: auths[{key!r}].auth: bad base64") from e
        user, sep, password = text.partition(":")
        if not sep or not user:
            raise InvalidArgument(
                f"docker config {path}: auths[{key!r}].auth: expected base64 of 'user:password'"
            )
        return user, password
    name, secret = entry.get("username"), entry.get("password")
    if isinstance(name, str) and isinstance(secret, str) and name:
        return name, secret
    return None


def login(
    host: str,
    user: str,
    password: str,
    *,
    config_path: Path | str | None = None,
    insecure_registries: tuple[str, ...] = (),
    user_agent: str | None = None,
) -> str:
    """Check the credentials against the registry's /v2/ (a token fetched with them, or a
    200 with a basic header), then save them. Returns the config key written. Raises
    registry.Unauthorized when the registry rejects them, and stores nothing then."""
    from pyrt.images.registry import DEFAULT_USER_AGENT, RegistryClient

    creds = CredentialStore(config_path)
    creds._refuse_helper(creds._load(), host, "store credentials")
    domain = "docker.io" if config_key(host) == DOCKER_HUB_KEY else _strip(host)
    client = RegistryClient(
        domain,
        insecure_registries=insecure_registries,
        credentials_lookup=lambda _h: (user, password),
        user_agent=user_agent or DEFAULT_USER_AGENT,
    )
    try:
        client.ping(authenticate=True)
    finally:
        client.close()
    return creds.store(host, user, password)


def logout(host: str, *, config_path: Path | str | None = None) -> bool:
    """Forget the credentials for `host`; False when there were none."""
    return CredentialStore(config_path).erase(host)
