"""What `ofa-agent run` is given, checked before anything dials: the coordinator's address,
the token file, the CA file and the default cache folder. A problem is one ValueError that
names the option and says what to pass instead; none of them can fix itself by retrying."""

from __future__ import annotations

import hashlib
import re
import ssl
from pathlib import Path

__all__ = [
    "parse_address",
    "parse_addresses",
    "read_token",
    "read_ca",
    "default_cache_dir",
    "MAX_TOKEN_BYTES",
    "MISCONFIGURED",
]

MISCONFIGURED = 3  # the exit code of a setting no retry can fix; systemd does not restart it

MAX_TOKEN_BYTES = 4096  # `ofa-coord token create` writes 47; anything this large is not one
MAX_CA_BYTES = 1 << 20
_PORT = re.compile(r"[0-9]{1,5}")


def parse_address(address: str) -> tuple[str, int]:
    """(host, port) of HOST:PORT or [IPv6]:PORT; gRPC would quietly default a missing port."""
    host, sep, port = address.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ValueError(f"--coordinator: write an IPv6 address as [ADDRESS]:PORT, got {address!r}")
    if not sep or not host or any(c.isspace() for c in host):
        raise ValueError(
            f"--coordinator: expected HOST:PORT, e.g. coord.lab:50051, got {address[:200]!r}"
        )
    if not _PORT.fullmatch(port) or not 1 <= int(port) <= 65535:
        raise ValueError(
            f"--coordinator: the port must be 1-65535, got {port[:20]!r} in {address[:200]!r}"
        )
    return host, int(port)


def parse_addresses(text: str) -> list[str]:
    """The HOST:PORT list of `--coordinator` (comma-separated, each checked, no repeats)."""
    addresses = [one.strip() for one in text.split(",")]
    if not all(addresses):
        raise ValueError(f"--coordinator: an empty address in {text[:200]!r}")
    for address in addresses:
        parse_address(address)
    if len(set(addresses)) < len(addresses):
        raise ValueError(f"--coordinator: an address is given twice in {text[:200]!r}")
    return addresses


def _read(option: str, path: str | Path, limit: int) -> bytes:
    try:
        with open(path, "rb") as file:
            data = file.read(limit + 1)
    except FileNotFoundError:
        raise ValueError(f"{option} {path}: no such file") from None
    except IsADirectoryError:
        raise ValueError(f"{option} {path}: is a directory, expected a file") from None
    except OSError as exc:
        raise ValueError(f"{option} {path}: cannot be read ({exc.strerror})") from None
    if len(data) > limit:
        raise ValueError(f"{option} {path}: over {limit} bytes, too large for what it should hold")
    return data


def read_token(path: str | Path) -> str:
    """The token in `path`: one word of printable ASCII (it travels as gRPC metadata), with
    surrounding whitespace, such as a trailing newline, ignored."""
    fix = "pass the file that `ofa-coord token create --out` wrote"
    try:
        token = _read("--token-file", path, MAX_TOKEN_BYTES).decode("ascii").strip()
    except UnicodeDecodeError:
        raise ValueError(
            f"--token-file {path}: holds binary or non-ASCII data, not a token; {fix}"
        ) from None
    if not token:
        raise ValueError(f"--token-file {path}: is empty; {fix}")
    if not all(33 <= ord(c) <= 126 for c in token):
        raise ValueError(
            f"--token-file {path}: holds more than one word or control characters, "
            f"not a token; {fix}"
        )
    return token


def read_ca(path: str | Path) -> bytes:
    """The PEM CA certificate(s) in `path`, checked by parsing them."""
    data = _read("--tls-ca", path, MAX_CA_BYTES)
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(cadata=data.decode("ascii"))
    except (UnicodeDecodeError, ssl.SSLError, ValueError):
        raise ValueError(
            f"--tls-ca {path}: holds no PEM certificate; pass the CA certificate "
            "(-----BEGIN CERTIFICATE-----) that signed the coordinator's"
        ) from None
    return data


def default_cache_dir(token: str) -> Path:
    """~/.cache/ofa-agent/<16 hex digits derived from the token>: agents with different tokens
    on one host keep different agent ids. A one-way hash, so the folder name reveals nothing
    of the secret, salted so that it is not the hash the coordinator stores."""
    digest = hashlib.sha256(b"ofa-agent cache-dir\0" + token.encode()).hexdigest()[:16]
    return Path.home() / ".cache" / "ofa-agent" / digest
