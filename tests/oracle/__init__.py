"""Test oracle: run the reference OFA implementation (PyPI `ofa`) in a subprocess.

The reference's top-level package is also called `ofa`, so it must never be imported into
the test process; `run_reference` hands it a JSON request and reads back a JSON response.

Request fields (see run_reference.py): family ("mbv3", the default, or "proxyless"), width
(1.0 or 1.2; 1.3 for ProxylessNAS), n_classes (default 1000), seed, state_dict (path of a
torch.save({"state_dict": sd, ...}) file or None), save_state_dict (optional path), subnets
(list of {"ks": [20 or 21], "e": [20 or 21], "d": [5], "r": int, "input": "x.npy" or None,
"state_dict": optional path of weights loaded for this subnet and those after it}), lut_dir
(optional folder of {r}_lookup_table.yaml), net_configs (optional list of net.config paths),
proxyless_lut (optional yaml in ProxylessNAS's latency-table format: the subnets, and the
ProxylessNASNets among net_configs, are summed with ProxylessNASLatencyTable), accuracy (optional
{"predictor": .pth path, "subnets": [{"ks", "e", "d", "r"}]}: the tutorial accuracy
predictor's outputs come back as a list under "accuracy").
With a state_dict, "loaded_keys" lists its keys the reference lacks ("unexpected") and the
reference's keys it lacks ("missing"). Per-subnet response: macs, params, state_dict
{key: shape}, net_config, and when asked logits_super / logits_sub (.npy paths), lut_ms,
lut_keys, lut_ms_net, lut_keys_net, lut_error.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
TIMEOUT_S = 600


def reference_dir() -> Path:
    """Folder holding the installed reference (installed on first use, offline-capable)."""
    dest = ROOT / ".cache" / "ofa-reference"
    if not (dest / ".installed").exists():
        env = dict(os.environ, PYTHON=os.environ.get("PYTHON", sys.executable))
        proc = subprocess.run(
            ["bash", str(HERE / "install_reference.sh"), str(dest)],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"installing the reference failed:\n{proc.stderr}")
    return dest


def run_reference(request: dict, workdir: Path) -> dict:
    """Run the reference on `request` (ref_path is filled in here) and return its response."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    req_path, resp_path = workdir / "ref_request.json", workdir / "ref_response.json"
    req_path.write_text(json.dumps({**request, "ref_path": str(reference_dir())}))
    try:
        proc = subprocess.run(
            [sys.executable, str(HERE / "run_reference.py"), str(req_path), str(resp_path)],
            cwd=workdir,
            capture_output=True,
            text=True,
            timeout=TIMEOUT_S,
        )
    except subprocess.TimeoutExpired as e:
        raise RuntimeError(f"reference timed out after {TIMEOUT_S}s:\n{e.stderr}") from e
    if proc.returncode != 0:
        raise RuntimeError(f"reference failed (rc={proc.returncode}):\n{proc.stderr}")
    return json.loads(resp_path.read_text())
