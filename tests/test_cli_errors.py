"""The command line never shows a traceback. Every command that takes --db, against a damaged,
read-only or full database, ends in one line `ofa-coord: error: <file or field>: <problem>` on
stderr and exit 1; outputs that cannot be written leave nothing half made; settings out of
range are refused before anything is committed; exports are strict JSON.

The databases are real fleet databases, made through the store's own API (tokens, an agent,
a campaign, results as the servicer records them) and then damaged as a disk or a user would.
Read-only runs in a process without the capabilities that let root ignore file modes (when
the suite runs as root); a full disk is a real write limit (RLIMIT_FSIZE) on a real process.
"""

from __future__ import annotations

import csv
import ctypes
import io
import json
import os
import random
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from coordinator.cli.app import main as coord
from coordinator.services.campaigns import CampaignSpec, create_campaign, start_campaign
from coordinator.services.jobs import BenchOptions
from coordinator.services.predictor_data import predictor_path
from coordinator.services.targets import Target
from coordinator.state import BlobStore, Devices, Store
from ofa.config import SubnetConfig
from ofa.latency_model import BlockTable, fit_predictor
from ofa.lut import LatencyTable

ERROR = "ofa-coord: error: "
PR_CAPBSET_DROP, CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH = 24, 1, 2  # linux/prctl.h, capability.h


def invoke(*args):
    """Run one command in-process; a traceback would raise here and fail the test."""
    return CliRunner().invoke(coord, [str(a) for a in args], catch_exceptions=False)


def assert_one_error_line(result, *names: object) -> str:
    assert result.exit_code == 1, (result.exit_code, result.output)
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(ERROR), result.stderr
    for name in names:
        assert str(name) in lines[0], (name, lines[0])
    return lines[0]


def register(store: Store, label: str) -> str:
    """An agent registered as the servicer registers one."""
    secret = store.create_token(f"agent-{label}")
    return store.register_agent(
        store.token_by_secret(secret), "", [label], {"machine": "x86_64"}, 1, "test"
    )


@pytest.fixture(scope="module")
def assets_dir() -> Path:
    from tests.conftest import ASSETS

    return ASSETS


@pytest.fixture(scope="module")
def fleet_db(tmp_path_factory, assets_dir) -> Path:
    """A fleet database with a token `t1`, an agent labelled cpu, a LUT campaign `lut` whose
    jobs all reported, and a created campaign `c` (one subnet). Closed, so no -wal."""
    folder = tmp_path_factory.mktemp("good")
    db = folder / "fleet.db"
    store = Store(db)
    store.create_token("t1")
    register(store, "cpu")
    configs = folder / "one.jsonl"
    configs.write_text(SubnetConfig.smallest(r=48).to_json() + "\n")
    lut_results(store)
    create_campaign(
        store,
        BlobStore(store),
        CampaignSpec(
            name="c",
            targets=(Devices(label="cpu"),),
            workload="configs",
            configs_file=str(configs),
            reference_every=0,
        ),
    )
    store.close()
    return db


def copy_fleet(fleet_db: Path, folder: Path) -> Path:
    """A copy of the fleet database (blobs and predictors beside it) in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    db = folder / "fleet.db"
    shutil.copy(fleet_db, db)
    shutil.copytree(f"{fleet_db}.blobs", f"{db}.blobs")
    return db


def store_predictor(db: Path, assets_dir: Path) -> None:
    lut = LatencyTable.from_ofa_yaml(assets_dir / "note10").means()
    fit_predictor("lut", BlockTable.from_lut(lut, 1.2)).save(
        predictor_path(db, "cpu", "lut", Target().name)
    )


def db_commands(db: Path, out: Path, assets_dir: Path) -> dict[str, list]:
    """Every command that takes --db, by what it does to the database."""
    config = out.parent / "subnet.json"
    config.write_text(SubnetConfig.smallest(r=160, w=1.2).to_json())
    store = Store(db)
    agent = store.list_agents()[0]["id"]
    store.close()
    writes = {
        "token create": ["token", "create", "--db", db, "--name", "new", "--any-label"],
        "token create --out": [
            *("token", "create", "--db", db, "--name", "new2", "--label", "cpu"),
            *("--out", out / "t"),
        ],
        "token revoke": ["token", "revoke", "--db", db, "--name", "t1"],
        "campaign create": [
            "campaign",
            "create",
            "--db",
            db,
            "--name",
            "c2",
            "--label",
            "cpu",
            "--workload",
            "configs",
            "--configs",
            config,
            "--start",
        ],
        "campaign start": ["campaign", "start", "--db", db, "c"],
        "campaign cancel": ["campaign", "cancel", "--db", db, "c"],
    }
    reads = {
        "token list": ["token", "list", "--db", db],
        # the agent is not quarantined: nothing to clear, nothing written
        "agent readmit": ["agent", "readmit", "--db", db, agent],
        "devices": ["devices", "--db", db, "--format", "json"],
        "status": ["status", "--db", db, "--format", "json"],
        "campaign status": ["campaign", "status", "--db", db, "c"],
        "campaign wait": ["campaign", "wait", "--db", db, "c", "--timeout", "1"],
        "campaign list": ["campaign", "list", "--db", db],
        "results export": [
            "results",
            "export",
            "--db",
            db,
            "--campaign",
            "c",
            "--out",
            out / "r.csv",
        ],
        "lut export": ["lut", "export", "--db", db, "--device", "cpu", "--out", out / "lut"],
        "predictor train": ["predictor", "train", "--db", db, "--device", "cpu"],
        "predictor eval": ["predictor", "eval", "--db", db, "--device", "cpu"],
        "specialize --verify": [
            "specialize",
            "--db",
            db,
            "--device",
            "cpu",
            "--kind",
            "lut",
            "--acc-predictor",
            assets_dir / "acc_predictor.pth",
            "--latency-ms",
            "30",
            "--generations",
            "2",
            "--verify",
            "--verify-timeout",
            "1",
            "--out",
            out / "s",
        ],
    }
    return {
        "writes": writes,
        "reads": reads,
        "no db": {
            "predictor predict": [
                "predictor",
                "predict",
                "--db",
                db,
                "--device",
                "cpu",
                "--kind",
                "lut",
                config,
            ]
        },
    }


def prepared(fleet_db: Path, assets_dir: Path, tmp_path: Path) -> tuple[Path, Path, dict]:
    """A copy of the fleet database with a latency predictor beside it, an empty output
    folder, and the commands to run on them."""
    db = copy_fleet(fleet_db, tmp_path / "fleet")
    store_predictor(db, assets_dir)
    out = tmp_path / "out"
    out.mkdir()
    return db, out, db_commands(db, out, assets_dir)


# A finished phase's progress line, as coordinator/cli/output.py ProgressReport writes it
PROGRESS_LINE = re.compile(r"[a-z][a-z ]*: \d+/\d+( \(.*\))?, \d+ s")


def assert_one_line_where_failed(results: dict[str, dict], must_fail: set[str]) -> None:
    """No traceback anywhere; each command that failed (those in `must_fail` must) exited 1
    with one error line, after at most the progress lines of work done before it (a search
    that needs no database runs before the database is written)."""
    for name, result in results.items():
        assert result["exception"] == "", (name, result["exception"])
        if name in must_fail or result["exit"] != 0:
            assert result["exit"] == 1, (name, result)
            *before, last = result["stderr"].splitlines()
            assert last.startswith(ERROR), (name, result["stderr"])
            assert all(PROGRESS_LINE.fullmatch(line) for line in before), (name, before)


def damage(db: Path, how: str) -> None:
    data = db.read_bytes()
    if how == "truncated":  # a copy cut short: the header survives, the pages do not
        db.write_bytes(data[: len(data) // 3])
    elif how == "random":
        db.write_bytes(random.Random(0).randbytes(len(data)))
    else:
        db.write_text("id,name\n1,pixel7\n" * 200)


@pytest.mark.parametrize("how", ["truncated", "random", "text"])
def test_a_damaged_database_gives_one_line_naming_it_with_every_command(
    fleet_db, assets_dir, tmp_path, how
):
    db, out, commands = prepared(fleet_db, assets_dir, tmp_path)
    damage(db, how)
    for name, args in {**commands["writes"], **commands["reads"]}.items():
        line = assert_one_error_line(invoke(*args), db)
        assert "Traceback" not in line, name
    assert invoke(*commands["no db"]["predictor predict"]).exit_code == 0  # never opens it
    assert_no_exports(out)


def assert_no_exports(out: Path) -> None:
    """Neither the token, the results nor the LUT, nor a temporary file of theirs."""
    assert sorted(p.name for p in out.iterdir() if p.name != "s") == []


def _run_commands(
    commands: dict[str, list], file_modes: bool = False, file_limit: int | None = None
) -> dict[str, dict]:
    """Run each command in one real process (bound by file modes even as root, or under a
    write limit) and return {name: {exit, stdout, stderr, exception}}."""
    driver = (
        "import json, sys, traceback\n"
        "from click.testing import CliRunner\n"
        "from coordinator.cli.app import main\n"
        "out = {}\n"
        "for name, args in json.load(sys.stdin).items():\n"
        "    r = CliRunner().invoke(main, args)\n"
        "    bug = None if isinstance(r.exception, (SystemExit, type(None))) else r.exception\n"
        "    out[name] = {'exit': r.exit_code, 'stdout': r.stdout, 'stderr': r.stderr,\n"
        "                 'exception': ''.join(traceback.format_exception(bug)) if bug else ''}\n"
        "print(json.dumps(out))\n"
    )

    def limits() -> None:
        if file_limit is not None:
            import resource
            import signal

            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write fails with EFBIG instead
            resource.setrlimit(resource.RLIMIT_FSIZE, (file_limit, file_limit))
        if file_modes and os.geteuid() == 0:  # root keeps no capability past exec but these
            libc = ctypes.CDLL(None, use_errno=True)
            for cap in (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH):
                if libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
                    raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP) needs CAP_SETPCAP")

    done = subprocess.run(
        [sys.executable, "-c", driver],
        input=json.dumps({name: [str(a) for a in args] for name, args in commands.items()}),
        capture_output=True,
        text=True,
        preexec_fn=limits,
        timeout=600,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.mark.parametrize("read_only", ["file", "folder"])
def test_a_read_only_database_refuses_writes_in_one_line(fleet_db, assets_dir, tmp_path, read_only):
    db, out, commands = prepared(fleet_db, assets_dir, tmp_path)
    if read_only == "file":
        db.chmod(0o444)
    else:
        db.parent.chmod(0o555)
    try:
        results = _run_commands({**commands["writes"], **commands["reads"]}, file_modes=True)
    finally:
        db.parent.chmod(0o755)
    assert_one_line_where_failed(results, set(commands["writes"]))
    for name in commands["writes"]:
        assert str(db) in results[name]["stderr"], (name, results[name]["stderr"])
    assert Store(db).list_tokens()[0]["revoked_at"] is None  # nothing was written
    assert [t["name"] for t in Store(db).list_tokens()] == ["t1", "agent-cpu"]
    assert not (out / "t").exists()  # the token file of a token that could not be made
    assert [p.name for p in out.iterdir() if p.name.startswith(".")] == []  # no temporary file


def test_a_full_disk_gives_one_line_and_leaves_nothing_half_written(fleet_db, assets_dir, tmp_path):
    db, out, commands = prepared(fleet_db, assets_dir, tmp_path)
    holder = Store(db)  # a running coordinator keeps -wal and -shm, so reads still work
    try:
        holder.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        results = _run_commands({**commands["writes"], **commands["reads"]}, file_limit=0)
    finally:
        holder.close()
    assert_one_line_where_failed(results, {*commands["writes"], "results export", "lut export"})
    for export in ("results export", "lut export"):  # the exports' own writes
        assert "File too large" in results[export]["stderr"], results[export]
    assert_no_exports(out)
    assert [t["name"] for t in Store(db).list_tokens()] == ["t1", "agent-cpu"]


def test_token_create_to_an_unwritable_file_creates_no_token(tmp_path):
    db = tmp_path / "fleet.db"
    missing = tmp_path / "missing" / "dir" / "t"
    assert_one_error_line(
        invoke("token", "create", "--db", db, "--name", "pi", "--any-label", "--out", missing),
        missing,
        "No such file or directory",
    )
    assert Store(db).list_tokens() == []  # the name is still free, no secret was lost
    out = tmp_path / "pi.token"
    out.write_text("an old token\n")
    out.chmod(0o644)
    assert (
        "written to"
        in invoke("token", "create", "--db", db, "--name", "pi", "--any-label", "--out", out).output
    )
    secret = out.read_text().strip()
    assert Store(db).token_by_secret(secret).name == "pi"
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_exports_to_unwritable_paths_give_one_line_and_leave_nothing(fleet_db, tmp_path):
    db = copy_fleet(fleet_db, tmp_path / "fleet")
    missing = tmp_path / "missing" / "r.csv"
    assert_one_error_line(
        invoke("results", "export", "--db", db, "--campaign", "c", "--out", missing),
        missing,
        "No such file or directory",
    )
    a_file = tmp_path / "a-file"
    a_file.write_text("")
    assert_one_error_line(
        invoke("lut", "export", "--db", db, "--device", "cpu", "--out", a_file / "lut"),
        a_file,
        "Not a directory",
    )
    assert not missing.parent.exists() and a_file.read_text() == ""
    good = tmp_path / "lut"
    invoke("lut", "export", "--db", db, "--device", "cpu", "--out", good)
    assert sorted(p.name for p in good.iterdir()) == ["48_lookup_table.yaml"]


def started_lut_campaign(store: Store) -> str:
    """A started LUT campaign `lut` (48 px, one repeat) on cpu, nothing measured yet."""
    campaign = create_campaign(
        store,
        BlobStore(store),
        CampaignSpec(
            name="lut",
            targets=(Devices(label="cpu"),),
            workload="lut",
            resolutions=(48,),
            repeats=1,
            reference_every=0,
        ),
    )
    start_campaign(store, campaign)
    return campaign


def lut_results(store: Store) -> str:
    """A started LUT campaign `lut` on cpu with every job reported ok, as the servicer
    records an agent's reports."""
    campaign = started_lut_campaign(store)
    agent = store.list_agents()[0]["id"]
    while leased := store.lease_jobs(agent, 8, 60):
        for job in leased:
            store.report(
                agent,
                job.job_id,
                job.lease_id,
                "ok",
                {"samples_ns": [1_000_000, 1_100_000, 1_200_000]},
            )
    return campaign


def test_jsonl_exports_are_strict_json(fleet_db, tmp_path):
    db = copy_fleet(fleet_db, tmp_path / "fleet")
    store = Store(db)
    invoke("campaign", "start", "--db", db, "c")
    agent = store.list_agents()[0]["id"]
    job = store.lease_jobs(agent, 1, 60)[0]
    nan, inf = float("nan"), float("inf")
    store.report(
        agent,
        job.job_id,
        job.lease_id,
        "ok",  # what older servers let through
        {
            "samples_ns": [1_000_000, 1_000_500],
            "before": {"temp_c": nan, "freq": [inf]},
            "drift": {"drift": inf},
        },
    )
    text = invoke("results", "export", "--db", db, "--campaign", "c", "--format", "jsonl").stdout

    def refuse(constant: str):
        raise AssertionError(f"{constant} in the export")

    (row,) = [json.loads(line, parse_constant=refuse) for line in text.splitlines()]
    assert row["telemetry_before"] == {"temp_c": None, "freq": [None]}
    assert row["drift"] is None and row["median_ms"] > 0
    (cells,) = csv.DictReader(
        io.StringIO(invoke("results", "export", "--db", db, "--campaign", "c").stdout)
    )
    assert cells["drift"] == "" and float(cells["median_ms"]) > 0
    assert json.loads(cells["telemetry_before"], parse_constant=refuse) == {
        "freq": [None],
        "temp_c": None,
    }


@pytest.mark.parametrize(
    "args, field",
    [
        (["--threads", "1099511627776"], "settings.threads"),
        (["--min-time", "nan"], "settings.min_time_s"),
        (["--min-time", "inf"], "settings.min_time_s"),
        (["--min-time", "-1"], "settings.min_time_s"),
        (["--warmup-min-time", "1e300"], "settings.warmup_min_s"),
        (["--min-runs", "1000000000"], "settings.min_runs"),
        (["--max-ci", "nan"], "settings.target_precision"),
        (["--min-time", "5", "--max-time", "1"], "settings.max_time_s"),
        (["--repeats", "1000"], "repeats"),
        (["--max-attempts", "0"], "max_attempts"),
        (["--max-disturbed", "0"], "max_disturbed"),
        (["--max-disturbed", "101"], "max_disturbed"),
        (["--reference-every", "-1"], "reference_every"),
        (["--name", "c0123abcd"], "name"),
        (["--name", "tab\there"], "name"),
    ],
)
def test_out_of_range_campaign_settings_are_refused_before_anything_is_made(
    fleet_db, tmp_path, args, field
):
    db = copy_fleet(fleet_db, tmp_path / "fleet")
    store = Store(db)
    before = store.db.execute("SELECT COUNT(*) FROM campaigns").fetchone()[0]
    jobs = store.job_counts()
    line = assert_one_error_line(
        invoke(
            "campaign",
            "create",
            "--db",
            db,
            "--name",
            "x",
            "--label",
            "cpu",
            "--workload",
            "random",
            "--count",
            "1",
            "--resolutions",
            "48",
            *args,
            "--start",
        )
    )
    assert line.startswith(f"{ERROR}{field}: expected"), line
    assert store.db.execute("SELECT COUNT(*) FROM campaigns").fetchone()[0] == before
    assert store.job_counts() == jobs


def test_a_huge_count_is_refused_before_sampling():
    store = Store(":memory:")
    register(store, "cpu")
    spec = CampaignSpec(
        name="x",
        targets=(Devices(label="cpu"),),
        workload="random",
        count=10**9,
        resolutions=(48,),
        options=BenchOptions(),
    )
    with pytest.raises(ValueError, match=r"^count: expected an integer <= 100000, got"):
        spec.validate(store)


def test_campaign_names_are_unique_and_ids_keep_working(fleet_db, tmp_path):
    db = copy_fleet(fleet_db, tmp_path / "fleet")
    config = tmp_path / "one.jsonl"
    config.write_text(SubnetConfig.smallest(r=48).to_json())
    args = [
        "campaign",
        "create",
        "--db",
        db,
        "--label",
        "cpu",
        "--workload",
        "configs",
        "--configs",
        config,
    ]
    store = Store(db)
    (first,) = [r[0] for r in store.db.execute("SELECT id FROM campaigns WHERE name='c'")]
    line = assert_one_error_line(invoke(*args, "--name", "c"))
    assert f"name: campaign {first} is already named 'c'" in line
    second = invoke(*args, "--name", "c again").stdout.split()[1]
    assert (
        json.loads(invoke("campaign", "status", "--db", db, second, "--format", "json").stdout)[
            "name"
        ]
        == "c again"
    )
    # a database from before names were unique: the name is ambiguous, the ids are not
    store.db.execute("UPDATE campaigns SET name='c' WHERE id=?", (second,))
    line = assert_one_error_line(invoke("campaign", "status", "--db", db, "c"))
    assert "2 campaigns are named 'c'" in line and first in line and second in line
    for campaign_id in (first, second):
        assert invoke("campaign", "status", "--db", db, campaign_id).exit_code == 0


def test_a_deeply_nested_config_gives_one_line(tmp_path):
    config = tmp_path / "deep.json"
    config.write_text("[" * 200_000 + "]" * 200_000)
    assert_one_error_line(invoke("describe", config), "nested too deeply")


def test_float_options_refuse_nan_and_inf(tmp_path, assets_dir):
    db = tmp_path / "fleet.db"
    Store(db).close()
    specialize = [
        "specialize",
        "--lut",
        assets_dir / "note10",
        "--acc-predictor",
        assets_dir / "acc_predictor.pth",
        "--out",
        tmp_path / "out",
    ]
    for value in ("nan", "inf"):
        for args in (
            ["campaign", "wait", "--db", db, "x", "--timeout", value],
            [*specialize, "--latency-ms", value],
            [*specialize, "--pareto", f"10:{value}:3"],
        ):
            result = invoke(*args)
            assert result.exit_code == 2 and "expected" in result.stderr, result.output
            assert "finite" in result.stderr, result.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "second, message",
    [
        ({}, "scenario 1: name: 'note10' is scenario 0's too"),
        ({"name": "../elsewhere"}, "scenario 1: name: expected a folder name, got '../elsewhere'"),
    ],
)
def test_two_scenarios_never_write_into_one_folder(assets_dir, tmp_path, second, message):
    scenarios = tmp_path / "scenarios.json"
    scenarios.write_text(
        json.dumps(
            [
                {"lut": str(assets_dir / "note10"), "latency_ms": [20]},
                {"lut": str(assets_dir / "note10"), "latency_ms": [30], **second},
            ]
        )
    )
    out = tmp_path / "out"
    line = assert_one_error_line(
        invoke(
            "specialize",
            "--scenarios",
            scenarios,
            "--acc-predictor",
            assets_dir / "acc_predictor.pth",
            "--out",
            out,
        )
    )
    assert message in line
    assert not out.exists() and not (tmp_path / "elsewhere").exists()  # refused before searching


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://fleet:s3cret@127.0.0.1:1/fleet",
        "postgresql://fleet@127.0.0.1:1/fleet?password=s3cret&connect_timeout=2",
    ],
)
def test_a_database_url_s_password_never_shows(url):
    """A PostgreSQL fleet that cannot be reached: one line naming the URL, not its password."""
    result = CliRunner().invoke(coord, ["devices", "--db", url])
    assert result.exit_code == 1
    line = result.stderr.strip()
    assert line.startswith("ofa-coord: error: postgresql://fleet") and "\n" not in line
    assert "s3cret" not in line


def test_an_unencoded_at_sign_in_a_database_url_is_refused_unshown():
    """libpq would take what follows an '@' inside the password for the host, and name it."""
    result = CliRunner().invoke(coord, ["devices", "--db", "postgresql://f:s3c@ret@h/fleet"])
    assert result.exit_code == 2 and "%40" in result.stderr
    assert "s3c" not in result.output + result.stderr
