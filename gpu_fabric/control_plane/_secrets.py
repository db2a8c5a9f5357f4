"""Secrets: Fernet encryption at rest with a key file in the data dir, and lookup for containers."""
from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import re
import time
from dataclasses import replace
from typing import Callable, Iterable, Mapping

from ._engine import FabricError
from ._object_store import ObjectStore, StoredSecret
from ._tokens import listed_here, name_owner, scoped_name

log = logging.getLogger("gpu_fabric.control_plane")

KEY_FILE_NAME = "secrets.key"
ANONYMOUS_PREFIX = "_anon-"
MAX_KEYS = 200
MAX_TOTAL_BYTES = 1024 * 1024

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_ENV_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Variables the fabric sets itself: a secret must not redirect a container to another fabric.
_RESERVED_PREFIX = "GPUFABRIC_"


def create_hint(name: str) -> str:
    return f"create it with `gpufabric secret create {name} KEY=VALUE`"


class SecretVault:
    """Named and anonymous secrets in an ObjectStore, encrypted with a Fernet key.

    The key lives in `secrets.key` (mode 0600) in the data dir, made on first use. Values are
    decrypted only by `env_for` (a container's environment); nothing here logs them.
    """

    def __init__(self, store: ObjectStore, data_dir: str, *, clock: Callable[[], float] = time.time):
        self.store = store
        self.key_path = os.path.join(data_dir, KEY_FILE_NAME)
        self.clock = clock
        self._fernet = None
        self._key = b""

    # -- the key
    def _cipher(self):
        if self._fernet is None:
            from cryptography.fernet import Fernet

            self._key = self._load_or_create_key(Fernet)
            self._fernet = Fernet(self._key)
        return self._fernet

    def _load_or_create_key(self, fernet_cls) -> bytes:
        try:
            # O_EXCL: two processes racing on a fresh data dir cannot both write a key.
            fd = os.open(self.key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            mode = os.stat(self.key_path).st_mode & 0o777
            if mode & 0o077:
                log.warning("%s is readable by other users (mode %o); chmod 600 it", self.key_path, mode)
            with open(self.key_path, "rb") as fh:
                key = fh.read().strip()
            if not key:
                raise FabricError("INTERNAL", f"the secrets key file {self.key_path} is empty; restore it from a backup")
            return key
        key = fernet_cls.generate_key()
        with os.fdopen(fd, "wb") as fh:
            fh.write(key)
            fh.flush()
            os.fsync(fh.fileno())
        return key

    def _encrypt(self, env: Mapping[str, str]) -> bytes:
        return self._cipher().encrypt(json.dumps(dict(env), sort_keys=True).encode())

    def _decrypt(self, secret: StoredSecret) -> dict[str, str]:
        from cryptography.fernet import InvalidToken

        try:
            return json.loads(self._cipher().decrypt(secret.ciphertext))
        except InvalidToken:
            raise FabricError(
                "FAILED_PRECONDITION",
                f"secret {name_owner(secret.name)[1]!r} cannot be decrypted with {self.key_path} (was the key file "
                f"replaced?); recreate it with `gpufabric secret create {name_owner(secret.name)[1]} KEY=VALUE --force`",
            ) from None

    def _anonymous_name(self, app_id: str, env: Mapping[str, str]) -> str:
        self._cipher()
        # Keyed, so the name says nothing about the values to whoever lists secrets; stable, so
        # redeploying the same values keeps the same name (and the function's spec unchanged).
        canonical = json.dumps(dict(env), sort_keys=True).encode()
        digest = hmac.new(self._key, app_id.encode() + b"\0" + canonical, hashlib.sha256).hexdigest()
        return ANONYMOUS_PREFIX + digest[:24]

    # -- operations
    # Secrets belong to a workspace: `workspace` defaults to the RPC's (_tokens.scoped_name), and
    # names here are the ones people use; the store holds "workspace/name" outside the default one.
    def create(self, name: str, env: Mapping[str, str], *, overwrite: bool = False, app_id: str = "",
               workspace: str | None = None) -> str:
        """Store a secret (or, with an empty name and an app id, the app's anonymous one); returns its name."""
        _check_env(env)
        if not name:
            if not app_id:
                raise FabricError("INVALID_ARGUMENT", "a secret needs a name (or an app id for an anonymous secret)")
            name, overwrite = self._anonymous_name(app_id, env), True
        else:
            if not _NAME.match(name):
                raise FabricError(
                    "INVALID_ARGUMENT",
                    f"secret name must be 1-64 letters, digits, '.', '_' or '-' starting with a letter or digit; got {name!r}",
                )
            app_id = ""
        now = self.clock()
        existing = self.store.get_secret(scoped_name(name, workspace))
        if existing is not None and not overwrite:
            raise FabricError("ALREADY_EXISTS", f"secret {name!r} already exists; pass --force (overwrite=True) to replace it")
        created = existing.created_at if existing is not None else now
        self.store.put_secret(StoredSecret(scoped_name(name, workspace), sorted(env), self._encrypt(env), created, now, app_id))
        return name

    def list(self, include_anonymous: bool = False) -> list[StoredSecret]:
        """The RPC's workspace's secrets (names and key names only are meant to leave this process)."""
        return [replace(s, name=name_owner(s.name)[1]) for s in self.store.list_secrets()
                if (include_anonymous or not s.app_id) and listed_here(s.name)]

    def delete(self, name: str, allow_missing: bool = False) -> None:
        if not self.store.delete_secret(scoped_name(name)) and not allow_missing:
            raise FabricError("NOT_FOUND", f"no secret named {name!r}; `gpufabric secret list` shows them")

    def check_names(self, names: Iterable[str], app_id: str, workspace: str | None = None) -> None:
        """Raise NOT_FOUND naming the first secret a function refers to that does not exist."""
        for name in names:
            secret = self.store.get_secret(scoped_name(name, workspace))
            if secret is None or (secret.app_id and secret.app_id != app_id):
                if name.startswith(ANONYMOUS_PREFIX):
                    raise FabricError("NOT_FOUND", f"anonymous secret {name!r} does not belong to this app; "
                                                   "register it with the app's FunctionCreate (Secret.from_dict)")
                raise FabricError("NOT_FOUND", f"secret {name!r} not found; {create_hint(name)}")

    def env_for(self, names: Iterable[str], app_id: str, workspace: str | None = None) -> dict[str, str]:
        """The merged environment of `names` (later ones win), for one container of `app_id` (of `workspace`)."""
        env: dict[str, str] = {}
        for name in names:
            secret = self.store.get_secret(scoped_name(name, workspace))
            if secret is None or (secret.app_id and secret.app_id != app_id):
                raise FabricError("FAILED_PRECONDITION", f"secret {name!r} was deleted; {create_hint(name)}")
            env.update(self._decrypt(secret))
        return env

    def drop_anonymous(self, keep: Callable[[str], bool]) -> int:
        """Delete anonymous secrets whose app `keep(app_id)` rejects; returns how many."""
        dropped = 0
        for secret in self.store.list_secrets():
            if secret.app_id and not keep(secret.app_id):
                dropped += self.store.delete_secret(secret.name)
        return dropped


def _check_env(env: Mapping[str, str]) -> None:
    if not env:
        raise FabricError("INVALID_ARGUMENT", "a secret needs at least one KEY=VALUE")
    if len(env) > MAX_KEYS:
        raise FabricError("INVALID_ARGUMENT", f"a secret holds at most {MAX_KEYS} keys")
    total = 0
    for key, value in env.items():
        if not _ENV_KEY.match(key):
            raise FabricError("INVALID_ARGUMENT", f"secret key {key!r} is not an environment variable name (A-Z, 0-9, _)")
        if key.startswith(_RESERVED_PREFIX):
            raise FabricError("INVALID_ARGUMENT", f"secret key {key!r}: {_RESERVED_PREFIX}* variables are the fabric's own")
        if "\0" in value:
            raise FabricError("INVALID_ARGUMENT", f"the value of secret key {key!r} contains a NUL byte")
        total += len(key) + len(value.encode())
    if total > MAX_TOTAL_BYTES:
        raise FabricError("INVALID_ARGUMENT", f"a secret holds at most {MAX_TOTAL_BYTES:,} bytes of keys and values")
