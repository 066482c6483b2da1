"""Collect the measurements the predictor benchmark trains and evaluates on.

Run: .venv/bin/python -m bench.predictor_data --out runs/predictor-data [--subnets 300]

A real coordinator and two real agents on loopback: `cpu-1t` (1 thread) and `cpu-2t`
(2 threads), measured one after the other. cpu-1t gets one `lut+random` campaign: every LUT
entry at 160..224 px (w1.0) and `--subnets` random subnets, shuffled together, each measured
twice. cpu-2t, the "new device" of the few-sample study, gets only `--new-device-subnets`
random subnets (twice). The database stays in `--out` for `bench.predictors`.

`--protocol new` (the default) measures with the agent's own defaults: warm-up until the
timings are stable, threads pinned, runs until the median's confidence interval is tight,
disturbed measurements re-measured. `--protocol old` is the fixed one the first figures used:
a 0.2 s warm-up (`--warmup-time`) and at least 30 runs and 0.3 s (`--min-time`).
"""

from __future__ import annotations

import argparse
import signal
import time
from pathlib import Path

from coordinator.services.campaigns import (
    CampaignSpec,
    campaign_status,
    create_campaign,
    render_progress,
    start_campaign,
)
from coordinator.services.jobs import BenchOptions
from coordinator.services.local import start_agent, start_server
from coordinator.state import BlobStore, Devices, Store

RESOLUTIONS = (160, 176, 192, 208, 224)


def run(store: Store, spec: CampaignSpec) -> str:
    campaign = create_campaign(store, BlobStore(store), spec)
    start_campaign(store, campaign)
    while True:
        status = campaign_status(store, campaign)
        print(render_progress(status), flush=True)
        if status["finished"] == status["total"]:
            return campaign
        time.sleep(30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--subnets", type=int, default=300)
    parser.add_argument("--new-device-subnets", type=int, default=150)
    parser.add_argument("--min-time", type=float, default=0.3)
    parser.add_argument("--warmup-time", type=float, default=0.2)
    parser.add_argument("--protocol", choices=("new", "old"), default="new")
    args = parser.parse_args()

    args.out.mkdir(parents=True, exist_ok=True)
    store = Store(args.out / "fleet.db")
    server, address = start_server(args.out / "fleet.db", log=open(args.out / "server.log", "ab"))
    agents = []
    try:
        for label, threads in (("cpu-1t", 1), ("cpu-2t", 2)):
            token = args.out / f"{label}.token"
            token.write_text(store.create_token(label))
            agents.append(
                start_agent(
                    address,
                    token,
                    args.out / f"agent-{label}",
                    [label],
                    ["--threads", str(threads)],
                    log=open(args.out / f"agent-{label}.log", "ab"),
                )
            )
        while len(store.list_agents()) < 2:
            time.sleep(0.2)
        options = (
            BenchOptions(
                warmup_runs=5, warmup_min_s=args.warmup_time, min_runs=30, min_time_s=args.min_time
            )
            if args.protocol == "old"
            else BenchOptions()
        )
        run(
            store,
            CampaignSpec(
                name="cpu-1t lut+random",
                targets=(Devices(label="cpu-1t"),),
                workload="lut+random",
                resolutions=RESOLUTIONS,
                count=args.subnets,
                seed=1,
                options=options,
            ),
        )
        run(
            store,
            CampaignSpec(
                name="cpu-2t random",
                targets=(Devices(label="cpu-2t"),),
                workload="random",
                resolutions=RESOLUTIONS,
                count=args.new_device_subnets,
                seed=2,
                options=options,
            ),
        )
    finally:
        for process in [*agents, server]:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=120)


if __name__ == "__main__":
    main()
