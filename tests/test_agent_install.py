"""The agent installs and runs without torch: a fresh venv with `pip install .[agent]`."""

from __future__ import annotations

import json
import shutil
import subprocess
import venv
from pathlib import Path

from ofa.config import SubnetConfig
from ofa.nn.export import export_lut_entries
from tests.fleet import Fleet, small_models

ROOT = Path(__file__).resolve().parents[1]


def test_agent_extra_installs_without_torch_and_serves_a_job(tmp_path):
    source = tmp_path / "src"  # a copy, so the build never writes into the checkout
    shutil.copytree(
        ROOT,
        source,
        ignore=shutil.ignore_patterns(
            ".venv", ".cache", ".git", "runs", "*.egg-info", "__pycache__", "build"
        ),
    )
    env_dir = tmp_path / "agent-venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    subprocess.run(
        [python, "-m", "pip", "install", "--quiet", f"{source}[agent]"],
        check=True,
        capture_output=True,
        text=True,
    )
    installed = subprocess.run(
        [python, "-m", "pip", "list", "--format=json"], check=True, capture_output=True, text=True
    ).stdout
    names = {p["name"].lower() for p in json.loads(installed)}
    assert "torch" not in names and "onnx" not in names and "ofa-fleet" in names
    assert {"onnxruntime", "grpcio", "protobuf", "psutil", "numpy", "click"} <= names

    key, artifact = next(iter(export_lut_entries(SubnetConfig.smallest(r=64)).items()))
    model = tmp_path / "entry.onnx"
    model.write_bytes(artifact.onnx)
    done = subprocess.run(
        [
            env_dir / "bin" / "ofa-agent",
            "bench",
            str(model),
            "--format",
            "json",
            "--min-runs",
            "5",
            "--min-time",
            "0.05",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert len(report["samples_ns"]) >= 5 and report["stats"]["median_ms"] > 0
    probe = subprocess.run([python, "-c", "import torch"], capture_output=True, cwd=tmp_path)
    assert probe.returncode != 0  # torch really is absent there

    info = subprocess.run(
        [env_dir / "bin" / "ofa-agent", "info"],
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,
    )
    assert json.loads(info.stdout)["onnxruntime_version"] and "torch_version" not in info.stdout

    fleet = Fleet(tmp_path / "fleet-run")
    fleet.folder.mkdir()
    try:
        fleet.start_server()
        fleet.start_agent("device", executable=env_dir / "bin" / "ofa-agent")
        jobs = fleet.enqueue(small_models(1))
        fleet.wait_done(jobs)
        (result,) = fleet.store.results(jobs[0])
        assert result["status"] == "ok" and result["accepted"] == 1
    finally:
        fleet.close()
