"""tools/gpu/check_agent.sh, the GPU hosts' end-to-end check, run here on the CPU
equivalents of its paths (this machine has no GPU): a real coordinator, a real agent and
one real campaign per path. A path no agent can run is reported, and fails the check."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "tools" / "gpu" / "check_agent.sh"


def test_the_gpu_check_measures_each_path_and_reports_one_it_cannot_run(tmp_path):
    env = {
        **os.environ,
        "PY": sys.executable,
        "BATCH": "2",
        "RESOLUTION": "32",
        "SUBNETS": "2",
        "MAX_TIME": "1",
        "KEEP": str(tmp_path / "run"),
    }
    paths = [
        "onnxruntime:CPUExecutionProvider:fp32",
        "torch:cpu:fp16",
        "onnxruntime:NoSuchExecutionProvider:fp32",  # no agent anywhere has it
    ]
    check = subprocess.Popen(
        ["bash", str(SCRIPT), *paths],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,  # a timeout stops the coordinator and agent too
    )
    try:
        out, err = check.communicate(timeout=300)
    finally:
        if check.poll() is None:
            os.killpg(check.pid, signal.SIGKILL)
    assert check.returncode == 1, out + err  # the last path cannot run
    sections = dict(re.findall(r"^== (\w+ on \S+), .*\n((?:   .*\n)+)", out, re.M))
    for path in ("onnxruntime on CPUExecutionProvider", "torch on cpu"):
        assert re.search(r"2 of 2 subnets measured; median latency [0-9.]+ /", sections[path])
        assert "GPU not reported" in sections[path]  # no NVML here
    assert "onnxruntime 1." in sections["onnxruntime on CPUExecutionProvider"]
    assert "torch 2." in sections["torch on cpu"]
    refused = sections["onnxruntime on NoSuchExecutionProvider"]
    assert "refused:" in refused and "they can run" in refused and "torch:cpu" in refused
    assert (tmp_path / "run" / "fleet.db").exists()  # KEEP keeps the run
    again = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, env=env)
    assert again.returncode == 2 and "is not empty" in again.stderr  # never wiped
    leftovers = subprocess.run(
        ["pgrep", "-f", str(tmp_path / "run")], capture_output=True, text=True
    ).stdout
    assert not leftovers, f"processes of the check still run: {leftovers}"
