"""Fuzzing the CLI with damaged database files: every command that reads `--db` refuses a
file that is truncated, random bytes, text, empty, or garbage behind a valid SQLite header
with a non-zero exit and one line on stderr naming the file, no traceback, and leaves the
file as it was."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from coordinator.cli.app import main
from coordinator.services.jobs import BenchOptions, make_spec
from coordinator.state import Store
from tests.fuzzing import FUZZ

COMMANDS = [
    ["token", "list"],
    ["devices"],
    ["campaign", "list"],
    ["campaign", "status", "c1"],
    ["results", "export", "--campaign", "c1"],
    ["lut", "export", "--device", "cpu"],
]


@pytest.fixture(scope="module")
def real(tmp_path_factory) -> bytes:
    """A real fleet database with tokens, an agent and queued jobs, checkpointed into
    one file (no WAL beside it)."""
    path = tmp_path_factory.mktemp("fuzz-cli") / "real.db"
    store = Store(path)
    token = store.token_by_secret(store.create_token("a"))
    for i in range(20):
        store.create_token(f"spare-{i}")
    store.register_agent(token, "", ["cpu"], {"os": "Linux"}, 2, "fuzz")
    digest = "0" * 64
    store.add_blob(digest, 1)
    spec = make_spec(digest, 1, [("input", [1, 3, 64, 64])], BenchOptions()).SerializeToString()
    store.enqueue([(spec, digest)] * 200, label="cpu")
    store.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    store.close()
    return path.read_bytes()


def damaged(real: bytes):
    """Empty, truncated, random, text, or garbage behind a valid SQLite header. Truncation
    keeps at most half the file: SQLite then reports "database disk image is malformed" for
    every table (measured: cutting off only the last pages can leave a table readable, and a
    command that reads only it may rightly succeed)."""
    return st.one_of(
        st.just(b""),
        st.integers(1, len(real) // 2).map(lambda cut: real[:cut]),
        st.binary(min_size=1, max_size=8192),
        st.text(min_size=1, max_size=500).map(str.encode),
        st.binary(min_size=1, max_size=8192).map(lambda rest: real[:100] + rest),
    )


def test_damaged_databases_are_refused_in_one_line(real, tmp_path_factory):
    folder = tmp_path_factory.mktemp("damaged")

    @settings(FUZZ, max_examples=40)
    @given(st.sampled_from(COMMANDS), damaged(real))
    def fuzz(command, content):
        db = Path(tempfile.mkdtemp(dir=folder)) / "fleet.db"
        db.write_bytes(content)
        args = [*command, "--db", str(db)]
        if command[0] == "lut":
            args += ["--out", str(db.parent / "lut")]
        result = CliRunner().invoke(main, args)
        assert result.exception is None or isinstance(result.exception, SystemExit), (
            f"ofa-coord {' '.join(args)}: {type(result.exception).__name__}: {result.exception}"
        )
        assert result.exit_code != 0, f"ofa-coord {' '.join(args)}: exit 0, {result.stdout[:200]!r}"
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and "fleet.db" in lines[0], result.stderr[:500]
        assert db.read_bytes() == content, "the damaged file was changed"

    fuzz()
