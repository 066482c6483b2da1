"""(config, accuracy) pairs from a trained supernet: what an accuracy predictor learns from.

Each subnet is extracted, its batch-norm statistics recomputed on a fixed slice of the
training images (OFA: 2,000 images in batches of 200), and its top-1 measured on the
validation split. Output is JSONL, one object per line:
`{"config": SubnetConfig.to_dict(), "accuracy": top-1 fraction, "n_images": ..., "split":
"val", "checkpoint": ...}`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import torch

from ofa.config import sample_configs
from ofa.nn.bn_calibration import recalibrate_bn
from ofa.nn.checkpoint import load_mbconv_supernet
from ofa.nn.data import ImageSet, Splits, fixed_indices, place
from ofa.nn.resnet_supernet import OFAResNet50
from ofa.nn.supernet import ElasticSupernet, static_subnet
from ofa.plan import AnyConfig

__all__ = ["subnet_accuracy", "build_accuracy_dataset", "CALIBRATION_IMAGES", "BATCH_SIZE"]

CALIBRATION_IMAGES = 2000
BATCH_SIZE = 200


def _batches(
    data: ImageSet, indices: np.ndarray, resolution: int, batch_size: int, device: torch.device
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    for start in range(0, len(indices), batch_size):
        images, labels = data.batch(indices[start : start + batch_size], resolution)
        yield place(images, device), labels.to(device)


@torch.no_grad()
def subnet_accuracy(
    supernet: ElasticSupernet | OFAResNet50,
    config: AnyConfig,
    data: Splits,
    calibration: np.ndarray,
    batch_size: int = BATCH_SIZE,
    device: torch.device = torch.device("cpu"),
) -> float:
    """Top-1 (fraction) of `config` on the validation split, after BN recalibration on the
    training images `calibration`. The supernet is left untouched."""
    net = place(static_subnet(supernet, config), device)
    recalibrate_bn(
        net,
        (images for images, _ in _batches(data.train, calibration, config.r, batch_size, device)),
    )
    correct = 0
    for images, labels in _batches(
        data.val, np.arange(len(data.val)), config.r, batch_size, device
    ):
        correct += int((net(images).argmax(1) == labels).sum())
    return correct / len(data.val)


def build_accuracy_dataset(
    checkpoint: str | Path,
    data: Splits,
    out: str | Path,
    n_subnets: int,
    resolutions: Sequence[int],
    seed: int = 0,
    calibration_images: int = CALIBRATION_IMAGES,
    batch_size: int = BATCH_SIZE,
    log: Callable[[str], None] = print,
) -> list[dict]:
    """Evaluate `n_subnets` sampled architectures, each at every resolution, and write one
    JSONL line per (subnet, resolution) as soon as it is measured."""
    supernet = load_mbconv_supernet(checkpoint).eval()
    if supernet.classifier.linear.out_features != data.n_classes:
        raise ValueError(
            f"data: {data.n_classes} classes, but {checkpoint} was trained for "
            f"{supernet.classifier.linear.out_features}"
        )
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    calibration = fixed_indices(len(data.train), calibration_images, seed)
    architectures = sample_configs(n_subnets, seed, w=supernet.width, family=supernet.family.name)
    rows = []
    started = time.perf_counter()
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w") as fp:
        for i, architecture in enumerate(architectures):
            for r in resolutions:
                config = architecture.replace(r=r)
                row = {
                    "config": config.to_dict(),
                    "accuracy": subnet_accuracy(
                        supernet, config, data, calibration, batch_size, device
                    ),
                    "n_images": len(data.val),
                    "split": "val",
                    "checkpoint": str(checkpoint),
                    "calibration_images": len(calibration),
                }
                fp.write(json.dumps(row) + "\n")
                fp.flush()
                rows.append(row)
            done = (i + 1) * len(resolutions)
            rate = done / (time.perf_counter() - started)
            log(
                f"{done}/{n_subnets * len(resolutions)} subnets evaluated, "
                f"{rate:.2f}/s, last top-1 {rows[-1]['accuracy']:.3f}"
            )
    return rows
