"""The OFA authors' published files (accuracy predictor, Note10 latency tables), downloaded
the way their code does it, but checked against pinned sha256 sums so that a changed or
truncated file is refused instead of used."""

from __future__ import annotations

import hashlib
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

from coordinator.output_files import Staged

__all__ = [
    "AUTHORS_URL",
    "DEFAULT_DEST",
    "PINNED",
    "Outcome",
    "sha256_of",
    "fetch_one",
    "fetch_pinned",
]

# The authors' data repository, which their code (`mit-han-lab/once-for-all`) downloads from.
AUTHORS_URL = "https://raw.githubusercontent.com/han-cai/files/master/"
DEFAULT_DEST = Path.home() / ".cache" / "ofa-fleet" / "assets"

# local path -> (path under the authors' repository, sha256)
PINNED: dict[str, tuple[str, str]] = {
    "acc_predictor.pth": (
        "ofa/acc_predictor.pth",
        "48685122a3540636b06699af66cd816456b25f29b69563e2fda9bed4018eeba0",
    ),
    **{
        f"note10/{r}_lookup_table.yaml": (f"ofa/note10/{r}_lookup_table.yaml", digest)
        for r, digest in (
            (160, "a2671a45e9400542679ed03de946b45d6a35010f9ab21834af3e7ba8341d36d1"),
            (176, "34223ae037d5719a5f33261bdfd9341f590a2999edf520f174309605dc06307c"),
            (192, "0ff5ca0649e56ad34a42d6a8a6f20adb5121c8d12d135299397b310472db79e2"),
            (208, "41aa63af766a8298354e6aa5ae69d512ac68656a6e7d0a4fa5dc725c8d438633"),
            (224, "c13a9bcb3f4becae844bce4897129c4e42975984c1029cbd5acb48c970136530"),
        )
    },
}


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def fetch_one(url: str, target: Path, expected: str, timeout_s: float) -> None:
    """Download to a temporary file beside `target`, check its sha256, then rename: `target`
    exists only when complete and correct."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with (
        Staged(target, binary=True) as staged,
        urllib.request.urlopen(url, timeout=timeout_s) as response,
    ):
        while chunk := response.read(1 << 20):
            staged.file.write(chunk)
        staged.sync()
        got = sha256_of(Path(staged.temporary))
        if got != expected:
            raise ValueError(f"{url}: sha256 {got}, expected {expected}; the file was not kept")


class Outcome(NamedTuple):
    """What became of one pinned file: state 'ok' (already present and correct), 'fetched'
    or 'failed' (`problem` says why)."""

    name: str
    state: str
    problem: str = ""


def fetch_pinned(folder: Path, base_url: str, timeout_s: float) -> Iterator[Outcome]:
    """Every pinned file into `folder` (the authors' layout), skipping those present with the
    right sum; yields each file's outcome as it is settled. One file failing does not stop
    the others."""
    for name, (remote, expected) in PINNED.items():
        target = folder / name
        if target.is_file() and sha256_of(target) == expected:
            yield Outcome(name, "ok")
            continue
        url = base_url.rstrip("/") + "/" + remote
        try:
            fetch_one(url, target, expected, timeout_s)
        except (OSError, ValueError, urllib.error.URLError) as exc:  # the next file may work
            yield Outcome(name, "failed", str(exc))
            continue
        yield Outcome(name, "fetched")
