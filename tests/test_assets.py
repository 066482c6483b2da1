"""`ofa-coord assets fetch` against a mirror served on loopback from the shared copy (no test
downloads from the internet): checksums are enforced, nothing partial is left behind, and
files already present are not fetched again."""

from __future__ import annotations

import functools
import http.server
import shutil
import threading

import numpy as np
import pytest

from coordinator.services.assets import PINNED, sha256_of
from ofa.accuracy import AccuracyPredictor
from ofa.config import sample_configs
from tests.cli_output import cli


@pytest.fixture
def mirror(assets, tmp_path):
    """An HTTP server with the authors' layout (`ofa/...`); yields (url, root, request log)."""
    root = tmp_path / "mirror"
    for name, (remote, _) in PINNED.items():
        (root / remote).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(assets / name, root / remote)
    requests: list[str] = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args) -> None:
            requests.append(self.path)

    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(Handler, directory=str(root))
    )
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/", root, requests
    server.shutdown()


def test_fetch_checks_every_file_and_skips_those_present(mirror, tmp_path, assets):
    url, _, requests = mirror
    dest = tmp_path / "dest"
    text = cli("assets", "fetch", "--dest", dest, "--base-url", url)
    assert text.count("fetched") == len(PINNED) == 6
    for name, (_, digest) in PINNED.items():
        assert sha256_of(dest / name) == digest == sha256_of(assets / name)
    official = AccuracyPredictor.load(dest / "acc_predictor.pth")
    converted = AccuracyPredictor.load(dest / "acc_predictor.npz")  # read without torch
    configs = sample_configs(20, seed=3, resolutions=(160, 224), w=1.2)
    assert np.array_equal(converted.predict(configs), official.predict(configs))
    requests.clear()
    text = cli("assets", "fetch", "--dest", dest, "--base-url", url)
    assert text.count("ok ") == 6 and requests == []


def test_a_changed_file_is_refused_and_not_kept(mirror, tmp_path):
    url, root, _ = mirror
    (root / "ofa/note10/192_lookup_table.yaml").write_text("Conv-input: tampered\n")
    dest = tmp_path / "dest"
    text = cli("assets", "fetch", "--dest", dest, "--base-url", url, expect=1)
    assert "note10/192_lookup_table.yaml" in text and "expected 0ff5ca06" in text
    assert "1 of 6 file(s) not fetched" in text
    assert not (dest / "note10/192_lookup_table.yaml").exists()
    assert sorted(p.name for p in (dest / "note10").iterdir()) == [
        f"{r}_lookup_table.yaml" for r in (160, 176, 208, 224)
    ]  # no temporary files left


def test_an_unreachable_mirror_fails_with_each_file_named(tmp_path):
    text = cli(
        "assets",
        "fetch",
        "--dest",
        tmp_path,
        "--base-url",
        "http://127.0.0.1:9/",
        "--timeout",
        "2",
        expect=1,
    )
    assert "6 of 6 file(s) not fetched" in text and "acc_predictor.pth" in text
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []
