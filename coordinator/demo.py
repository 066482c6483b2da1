"""`ofa-coord demo`: the main job at its current size.

Sample subnets, export each to ONNX, time each in a separate agent process (the same
engine the fleet uses), and print one table. Models are measured in a shuffled order,
`--rounds` times, so a drift of the machine does not masquerade as a difference between
subnets.
"""

from __future__ import annotations

import json
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

import click

from coordinator.options import RESOLUTIONS, WIDTH
from ofa.config import sample_configs
from ofa.plan import count_macs, count_params


def _bench_in_agent(model: Path, threads: int, min_time: float) -> dict:
    """Run `ofa-agent bench --json` on `model` in its own process and return its report."""
    command = [sys.executable, "-m", "agent", "bench", str(model), "--json",
               "--threads", str(threads), "--min-time", str(min_time)]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise click.ClickException(f"agent failed on {model.name}: {done.stderr.strip()}")
    return json.loads(done.stdout)


@click.command()
@click.option("-n", "--count", type=click.IntRange(min=1), default=4, show_default=True,
              help="Subnets to sample.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--resolutions", type=RESOLUTIONS, default="160,192,224", show_default=True)
@click.option("--width", type=WIDTH, default="1.0", show_default=True)
@click.option("--threads", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--rounds", type=click.IntRange(min=1), default=2, show_default=True,
              help="Times each model is measured, interleaved with the others.")
@click.option("--min-time", type=click.FloatRange(min=0), default=1.0, show_default=True,
              help="Seconds of timed runs per measurement at least.")
@click.option("--run-dir", type=click.Path(file_okay=False), default="runs", show_default=True,
              help="Parent folder of this run's folder.")
def demo(count: int, seed: int, resolutions: tuple[int, ...], width: str, threads: int,
         rounds: int, min_time: float, run_dir: str) -> None:
    """Sample subnets, export them to ONNX and time them on onnxruntime."""
    from ofa.export import export_subnet  # torch loads only when the demo runs
    from ofa.supernet import OFAMobileNetV3

    started = time.perf_counter()
    folder = Path(run_dir) / time.strftime("demo-%Y%m%d-%H%M%S")
    (folder / "models").mkdir(parents=True, exist_ok=True)
    configs = sample_configs(count, seed, resolutions, float(width))
    supernet = OFAMobileNetV3(float(width)).eval()  # latency does not depend on the weights
    rows = {}
    for i, config in enumerate(configs, 1):
        t0 = time.perf_counter()
        artifact = export_subnet(supernet, config)
        export_s = time.perf_counter() - t0
        path = folder / "models" / f"{config.id}.onnx"
        path.write_bytes(artifact.onnx)
        rows[config.id] = {"config": config.to_dict(), "macs": count_macs(config),
                           "params": count_params(config), "onnx_mib": len(artifact.onnx) / 2**20,
                           "sha256": artifact.sha256, "export_s": export_s, "runs": []}
        click.echo(f"[{i}/{count}] exported {config.id} (r={config.r}) in {export_s:.2f} s", err=True)
    order = [cid for _ in range(rounds) for cid in rows]
    random.Random(seed).shuffle(order)
    device = None
    for i, cid in enumerate(order, 1):
        report = _bench_in_agent(folder / "models" / f"{cid}.onnx", threads, min_time)
        device = report["device"]
        rows[cid]["runs"].append({k: report[k] for k in ("stats", "session_create_ns",
                                                         "first_run_ns", "stop_reason")})
        click.echo(f"[{i}/{len(order)}] measured {cid}: "
                   f"{report['stats']['median_ms']:.2f} ms ({report['stop_reason']})", err=True)
    wall_s = time.perf_counter() - started
    (folder / "demo.json").write_text(json.dumps({"device": device, "threads": threads,
                                                  "wall_s": wall_s, "subnets": rows}, indent=2))
    _print_table(rows, device, threads)
    click.echo(f"\n{count} subnets x {rounds} rounds in {wall_s:.1f} s; models and raw samples "
               f"in {folder}")


def _print_table(rows: dict, device: dict, threads: int) -> None:
    click.echo(f"\nonnxruntime, {threads} thread(s), {device['cpu_model']} "
               f"({device['logical_cpus']} logical CPUs, {device['machine']})")
    header = (f"{'subnet':<12} {'r':>4} {'MACs(M)':>8} {'params(M)':>9} {'ONNX(MiB)':>9} "
              f"{'export(s)':>9} {'session(ms)':>11} {'median(ms)':>10} {'rounds spread':>13}")
    click.echo(header)
    click.echo("-" * len(header))
    for cid, row in rows.items():
        medians = [run["stats"]["median_ms"] for run in row["runs"]]
        median = statistics.median(medians)
        spread = (max(medians) - min(medians)) / median if median else 0.0
        session_ms = statistics.median(run["session_create_ns"] for run in row["runs"]) / 1e6
        click.echo(f"{cid:<12} {row['config']['r']:>4} {row['macs'] / 1e6:>8.1f} "
                   f"{row['params'] / 1e6:>9.2f} {row['onnx_mib']:>9.1f} {row['export_s']:>9.2f} "
                   f"{session_ms:>11.1f} {median:>10.2f} {spread:>12.1%}")
