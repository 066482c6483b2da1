"""Real supernets with non-trivial weights for tests.

Fresh BN layers have mean 0 / var 1 and the kernel transforms start as identities, so a
freshly built supernet would not exercise them; these helpers randomise both.
"""

from __future__ import annotations

from typing import TypeVar

import torch
from torch import nn

from ofa.nn.supernet import SUPERNETS, ElasticSupernet

M = TypeVar("M", bound=nn.Module)


def randomized_supernet(width: float, seed: int, family: str = "mbv3") -> ElasticSupernet:
    return randomized(SUPERNETS[family](width), seed)


@torch.no_grad()
def randomized(model: M, seed: int) -> M:
    """`model` with every weight, BN statistic and kernel transform perturbed from `seed`."""
    generator = torch.Generator().manual_seed(seed)
    for name, tensor in model.state_dict().items():
        if name.endswith("num_batches_tracked"):
            continue
        noise = torch.randn(tensor.shape, generator=generator)
        if name.endswith("running_var"):
            tensor.copy_(0.5 + noise.abs())
        elif name.endswith("_matrix"):
            tensor.add_(0.1 * noise)
        elif name.endswith(("bn.weight", "bn.bias", "running_mean")):
            tensor.copy_((1.0 if name.endswith("weight") else 0.0) + 0.1 * noise)
        else:
            tensor.mul_(1.0).add_(0.02 * noise)
    return model.eval()
