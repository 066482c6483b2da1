"""Benchmark: one device measured on several targets (issue 14): fp32 at batch 1, 8 and 32,
and int8 at batch 1, side by side.

Run: .venv/bin/python -m bench.targets --out runs/targets [--subnets 150] [--resolution 160]
     [--targets b1,b8,b32,int8] [--min-time 0.3] [--score-only]

A real coordinator and one 1-thread agent on loopback, device label `cpu`. Each target gets
one `lut+random` campaign at --resolution: every LUT entry and --subnets random subnets,
shuffled together, each measured twice (warm-up from 2 runs on until stable, then --min-time s
of timed runs and 10 runs at least, so that batch 32 fits in the time). Then, per target:
- OFA's LUT sum over the measured latency (median over the held-out subnets);
- each predictor kind trained on two thirds of the subnets (by id) and scored on the rest:
  share within +-10% and RMSE %, beside the noise floor (one repeat against the other);
- transfer to the target from K = 10 of its subnets: the b1 `lut-ridge` predictor rescaled,
  Spearman rho on the held-out subnets (5 draws of the K);
and int8 against fp32 per LUT entry, by group (as `lut compare` shows it).
"""

from __future__ import annotations

import argparse
import json
import random
import signal
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from agent.device import machine_summary
from bench.predictor_data import run
from coordinator.services.campaigns import CampaignSpec
from coordinator.services.jobs import BenchOptions
from coordinator.services.local import start_agent, start_server
from coordinator.services.lut_compare import Table, compare
from coordinator.services.lut_export import collect_lut
from coordinator.services.predictor_data import Measured, device_lut, split, target_subnets
from coordinator.services.predictors import evaluate, noise_floor
from coordinator.state import Devices, Store
from ofa.latency_model import BlockTable, LatencyPredictor, Structure, Transfer, fit_predictor

TARGETS = {  # name on the command line -> (precision, batch)
    "b1": ("fp32", 1),
    "b8": ("fp32", 8),
    "b32": ("fp32", 32),
    "int8": ("int8", 1),
}
LUT_KINDS = ("lut-corrected", "lut-ridge")
K, DRAWS = 10, 5


def specs(args: argparse.Namespace) -> dict[str, CampaignSpec]:
    """One campaign per target."""
    options = BenchOptions(warmup_runs=2, warmup_min_s=0.05, min_runs=10, min_time_s=args.min_time)
    return {
        short: CampaignSpec(
            name=f"cpu {short}",
            targets=(Devices(label="cpu"),),
            workload="lut+random",
            resolutions=(args.resolution,),
            count=args.subnets,
            seed=1,
            options=options,
            precision=TARGETS[short][0],
            batch=TARGETS[short][1],
        )
        for short in args.targets
    }


def measure(db: Path, out: Path, campaigns: dict[str, CampaignSpec]) -> None:
    """Every campaign, one after the other, on one 1-thread agent."""
    store = Store(db)
    server, address = start_server(db, log=open(out / "server.log", "ab"))
    token = out / "cpu.token"
    token.write_text(store.create_token("cpu"))
    agent = start_agent(
        address,
        token,
        out / "agent",
        ["cpu"],
        ["--threads", "1"],
        log=open(out / "agent.log", "ab"),
    )
    try:
        while not store.list_agents():
            time.sleep(0.2)
        for short, spec in campaigns.items():
            started = time.monotonic()
            run(store, spec)
            print(f"{short}: measured in {time.monotonic() - started:.0f} s", flush=True)
    finally:
        for process in (agent, server):
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=120)


@dataclass
class Scored:
    """One target's figures, and what the transfer and the int8 table are made from."""

    figures: dict
    lut_ridge: LatencyPredictor
    training: list[Measured]
    held_out: list[Measured]
    lut: dict[int, dict[str, float]]


def score(store: Store, name: str) -> Scored:
    """LUT sum over measured, and each kind's held-out figures, on target `name`."""
    measured = target_subnets(store, "cpu", target=name).measured
    training, held_out = split(measured)
    lut, family, width, _ = device_lut(collect_lut(store, "cpu", target=name))
    table = BlockTable.from_lut(lut, width, family)
    configs, medians = [m.config for m in training], [m.median_ms for m in training]
    models = {"lut": fit_predictor("lut", table)}
    models |= {kind: fit_predictor(kind, table, configs, medians, seed=0) for kind in LUT_KINDS}
    models["structure"] = Structure.fit(configs, medians, seed=0)
    lut_sum = models["lut"].predict([m.config for m in held_out])
    figures = {
        "name": name,
        "subnets": len(measured),
        "held_out": len(held_out),
        "lut_sum_over_measured": float(
            np.median(lut_sum / np.array([m.median_ms for m in held_out]))
        ),
        "kinds": {kind: _figures(evaluate(model, held_out)) for kind, model in models.items()},
        "noise_floor": _figures(noise_floor(held_out)),
    }
    return Scored(figures, models["lut-ridge"], training, held_out, lut)


def _figures(metrics: dict | None) -> dict | None:
    if metrics is None:
        return None
    return {k: round(metrics[k], 4) for k in ("within_10pct", "rmse_pct", "spearman_rho")}


def transfer(source, training, held_out) -> float:
    """Mean Spearman rho of `source` rescaled from K of `training`, over DRAWS draws."""
    rhos = []
    for draw in range(DRAWS):
        chosen = random.Random(draw).sample(training, min(K, len(training)))
        model = Transfer.fit(source, [m.config for m in chosen], [m.median_ms for m in chosen])
        rhos.append(evaluate(model, held_out)["spearman_rho"])
    return round(float(np.mean(rhos)), 4)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--subnets", type=int, default=150)
    parser.add_argument("--resolution", type=int, default=160)
    parser.add_argument("--min-time", type=float, default=0.3)
    parser.add_argument(
        "--targets", type=lambda s: s.split(","), default=list(TARGETS), help="b1,b8,b32,int8"
    )
    parser.add_argument(
        "--score-only", action="store_true", help="Score what --out's database already holds."
    )
    args = parser.parse_args()

    args.out.mkdir(parents=True, exist_ok=True)
    db = args.out / "fleet.db"
    campaigns = specs(args)
    if not args.score_only:
        measure(db, args.out, campaigns)
    store = Store(db)
    names = {short: spec.target.name for short, spec in campaigns.items()}
    scores = {short: score(store, name) for short, name in names.items()}
    report: dict = {"machine": machine_summary(), "resolution": args.resolution, "targets": {}}
    for short, found in scores.items():
        report["targets"][short] = found.figures
        if "b1" in scores and short != "b1":
            source = scores["b1"].lut_ridge
            found.figures["transfer_k10_spearman"] = transfer(
                source, found.training, found.held_out
            )
    if "int8" in scores and "b1" in scores:
        base, int8 = (Table(short, scores[short].lut) for short in ("b1", "int8"))
        report["int8_over_fp32"] = compare(base, int8)
    print(json.dumps(report, indent=2, default=str))


if __name__ == "__main__":
    main()
