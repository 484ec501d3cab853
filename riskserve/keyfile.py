"""Parsing API keys: the keys-file line format and RISKSERVE_API_KEYS, into digests with scopes.

A keys-file line is `<key or sha256:hex> [name=<id>] [models=<m1>,<m2>|*] [rate=<req/s>]`,
fields separated by whitespace, `#` starting a comment (a whole line, or any later word). Every
error names the line (or the RISKSERVE_API_KEYS entry) and the field, never the key itself,
because error messages end up in logs.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass

from riskserve.core.specs import MODEL_NAMES
from riskserve.errors import ConfigurationError

ENV_SOURCE = "RISKSERVE_API_KEYS"
FIELDS = ("name", "models", "rate")
# Names become Prometheus label values and appear in 403 messages and the access log: short,
# printable, no spaces or quotes.
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")
# Label values riskserve itself uses for "no key" (metrics.UNKNOWN_KEY, auth.ANONYMOUS).
RESERVED_NAMES = frozenset({"unknown", "anonymous"})


@dataclass(frozen=True)
class KeyEntry:
    """One accepted key: its SHA-256 digest (the key itself is never kept) and its scope.

    `models` None: every model; `rate` None: unlimited; `where` says where it was declared
    (for error messages such as duplicate names).
    """

    digest: bytes
    name: str
    models: frozenset[str] | None = None
    rate: float | None = None
    where: str = ""


def digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def default_name(key_digest: bytes) -> str:
    """`key-<first 8 hex of the key's sha256>`: stable, and the same for a key and its hash."""
    return f"key-{key_digest.hex()[:8]}"


def _key_digest(token: str, where: str) -> bytes:
    if token.startswith("sha256:"):
        try:
            raw = bytes.fromhex(token.removeprefix("sha256:").lower())
        except ValueError:
            raw = b""
        if len(raw) != 32:
            raise ConfigurationError(f"{where}: a 'sha256:' key must be 64 hex characters")
        return raw
    if any(token.startswith(f"{f}=") for f in FIELDS):
        raise ConfigurationError(f"{where}: the key must come first, before {token.split('=')[0]}=")
    return digest(token)


def _models(value: str, where: str) -> frozenset[str] | None:
    if value == "*":
        return None
    names = value.split(",")
    if not value or any(not n for n in names):
        raise ConfigurationError(f"{where}: models= needs model names separated by commas, or *")
    unknown = sorted(set(names) - set(MODEL_NAMES))
    if unknown:
        raise ConfigurationError(f"{where}: unknown model {', '.join(map(repr, unknown))} in "
                                 f"models=; known models: {', '.join(MODEL_NAMES)}")
    return frozenset(names)


def _rate(value: str, where: str) -> float:
    try:
        rate = float(value)
    except ValueError:
        rate = math.nan
    if not math.isfinite(rate) or rate <= 0:
        raise ConfigurationError(f"{where}: rate= must be a positive number of requests per "
                                 f"second, got {value!r}")
    return rate


def _name(value: str, where: str) -> str:
    if not NAME_PATTERN.fullmatch(value):
        raise ConfigurationError(f"{where}: name= must be 1-63 letters, digits, '_', '.' or '-', "
                                 f"starting with a letter or digit, got {value!r}")
    if value in RESERVED_NAMES:
        raise ConfigurationError(f"{where}: name={value} is reserved; choose another name")
    return value


def parse_line(text: str, where: str) -> KeyEntry | None:
    """One keys-file line; None for blank and comment lines."""
    words = text.split()
    for i, word in enumerate(words):
        if word.startswith("#"):
            words = words[:i]
            break
    if not words:
        return None
    key_digest = _key_digest(words[0], where)
    fields: dict[str, str] = {}
    for word in words[1:]:
        field, sep, value = word.partition("=")
        if not sep or field not in FIELDS:
            raise ConfigurationError(f"{where}: unknown field {field!r}; a line is '<key> "
                                     f"[name=<id>] [models=<m1>,<m2>|*] [rate=<req/s>]'")
        if field in fields:
            raise ConfigurationError(f"{where}: {field}= given twice")
        fields[field] = value
    return KeyEntry(
        digest=key_digest,
        name=_name(fields["name"], where) if "name" in fields else default_name(key_digest),
        models=_models(fields["models"], where) if "models" in fields else None,
        rate=_rate(fields["rate"], where) if "rate" in fields else None,
        where=where,
    )


def parse_file_text(text: str, source: str) -> list[KeyEntry]:
    """Every key of a keys file; a ConfigurationError naming `source` and the line number."""
    entries = (parse_line(line, f"{source} line {n}")
               for n, line in enumerate(text.splitlines(), start=1))
    return [e for e in entries if e is not None]


def parse_env(value: str) -> list[KeyEntry]:
    """RISKSERVE_API_KEYS: a plain comma list of keys (or sha256:hex), all models, no rate."""
    entries = []
    for n, token in enumerate(value.split(","), start=1):
        if token := token.strip():
            key_digest = _key_digest(token, f"{ENV_SOURCE} entry {n}")
            entries.append(KeyEntry(key_digest, default_name(key_digest),
                                    where=f"{ENV_SOURCE} entry {n}"))
    return entries


def check_unique(entries: Iterable[KeyEntry]) -> None:
    """Names label metrics and the access log, so each names one key; a key appears once."""
    names: dict[str, str] = {}
    keys: dict[bytes, str] = {}
    for e in entries:
        if e.digest in keys:
            raise ConfigurationError(f"{e.where}: the same key as {keys[e.digest]}")
        if e.name in names:
            raise ConfigurationError(f"{e.where}: name {e.name!r} is already used by "
                                     f"{names[e.name]}")
        keys[e.digest] = names[e.name] = e.where
