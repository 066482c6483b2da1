"""Benchmark: training throughput (images per second) of one progressive-shrinking step.

Run: .venv/bin/python -m bench.train_throughput [--threads 2] [--steps 3]

The step is the elastic-expand phase's (OFA's last and costliest): the teacher's forward
pass, then four sampled subnets (kernel 3/5/7, expand 3/4/6, depth 2/3/4), each forward and
backward with the distillation loss, gradients accumulated, one SGD step. Two settings: the
OFA one (w1.0, 1000 classes, batch 64 at 224 px, then at 160 px) and the digits demo's (10
classes, batch 16 at 32 px). Images are random tensors, so data decoding is not counted.
Images/s counts each batch once; subnet passes/s counts it once per subnet. The first step
(allocation warm-up) is timed apart.

Each setting runs in the layout training uses (`ofa.nn.data.place`: channels-last) and in
torch's default one (contiguous NCHW), one step of each in turn so that both see the same
machine; `channels_last_speedup` is the ratio of their median steps.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time

import torch

from agent.device import machine_summary
from ofa.nn.data import place
from ofa.nn.supernet import OFAMobileNetV3
from ofa.nn.train import make_optimizer, sample_subnet, teacher_network, train_step
from ofa.schedule import Phase

SETTINGS = (  # (name, classes, batch, resolution)
    ("ofa-224px", 1000, 64, 224),
    ("ofa-160px", 1000, 64, 160),
    ("digits-32px", 10, 16, 32),
)


LAYOUTS = {"channels_last": place, "contiguous": lambda x, device: x}


def measure(classes: int, batch: int, resolution: int, steps: int) -> dict:
    phase = Phase(
        name="expand-2",
        batch_size=batch,
        lr=0.0075,
        steps=steps,
        kd_ratio=1.0,
        subnets_per_step=4,
        ks=(3, 5, 7),
        e=(3, 4, 6),
        d=(2, 3, 4),
        resolutions=(resolution,),
    )
    cpu = torch.device("cpu")
    runs = {}
    for layout, to_layout in LAYOUTS.items():
        torch.manual_seed(0)
        model = to_layout(OFAMobileNetV3(1.0, n_classes=classes).train(), cpu)
        teacher = to_layout(teacher_network(model), cpu)
        runs[layout] = (to_layout, model, teacher, make_optimizer(model, phase), [])
    rng = random.Random(0)
    for _ in range(steps + 1):
        images = torch.randn(batch, 3, resolution, resolution)
        labels = torch.randint(0, classes, (batch,))
        subnets = [
            sample_subnet(rng, phase, resolution, 1.0) for _ in range(phase.subnets_per_step)
        ]
        for to_layout, model, teacher, optimizer, times in runs.values():
            started = time.perf_counter()
            train_step(model, optimizer, teacher, phase, to_layout(images, cpu), labels, subnets)
            times.append(time.perf_counter() - started)
    report: dict = {
        "batch": batch,
        "resolution": resolution,
        "classes": classes,
        "subnets_per_step": phase.subnets_per_step,
    }
    for layout, (*_, times) in runs.items():
        step_s = statistics.median(times[1:])
        report[layout] = {
            "first_step_s": round(times[0], 3),
            "step_s_median": round(step_s, 3),
            "step_s_all": [round(t, 3) for t in times[1:]],
            "images_per_s": round(batch / step_s, 2),
            "subnet_passes_images_per_s": round(batch * phase.subnets_per_step / step_s, 2),
        }
    report["channels_last_speedup"] = round(
        report["contiguous"]["step_s_median"] / report["channels_last"]["step_s_median"], 2
    )
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    parser.add_argument("--steps", type=int, default=3, help="timed steps per setting")
    parser.add_argument("--only", choices=[name for name, *_ in SETTINGS], action="append")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    report = {
        "machine": machine_summary(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "phase": "expand-2 (4 subnets/step, KD)",
        "settings": {},
    }
    for name, classes, batch, resolution in SETTINGS:
        if args.only and name not in args.only:
            continue
        report["settings"][name] = measure(classes, batch, resolution, args.steps)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
