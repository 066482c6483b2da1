"""Re-estimating batch-norm statistics of an extracted subnet.

A subnet's channels see different inputs than in the full supernet, so OFA recomputes BN
running statistics on ~2,000 training images after `get_active_subnet`.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

__all__ = ["recalibrate_bn"]


@torch.no_grad()
def recalibrate_bn(model: nn.Module, batches: Iterable[torch.Tensor]) -> int:
    """Set every BatchNorm's running mean/var to the average of its batch statistics over
    `batches` (images only); weights are untouched. Leaves the model in eval mode and
    returns the number of images seen."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in norms]
    model.eval()
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the batches
        m.train()
    seen = 0
    try:
        for images in batches:
            model(images)
            seen += images.size(0)
    finally:
        for m, momentum in zip(norms, momenta, strict=True):
            m.momentum = momentum
        model.eval()
    if seen == 0:
        raise ValueError("batches: no images given for BN recalibration")
    return seen
