"""Re-sorting each elastic block's middle channels by importance, before elastic expand.

A subnet with a smaller expand ratio keeps a prefix of the middle channels, so before that
phase OFA moves the most important channels to the front: importance is the L1 norm of each
channel's point-linear weights, and every weight that indexes middle channels (inverted
bottleneck, depthwise kernel, their batch norms, squeeze-excite) is permuted alike, which
leaves the full network's function unchanged. The squeeze-excite hidden units are sorted the
same way by their expand weights. Prefixes of expand ratios that earlier phases already
trained can be kept as sets (sorted only inside).
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise

import torch

from ofa import space
from ofa.nn.supernet import ElasticMBConv, ElasticSupernet

__all__ = ["sort_channels", "grouped_order"]


def grouped_order(importance: torch.Tensor, bounds: Sequence[int]) -> torch.Tensor:
    """Indices sorting `importance` descending inside each segment cut at `bounds`."""
    cuts = [0, *sorted(b for b in set(bounds) if 0 < b < len(importance)), len(importance)]
    parts = [
        start + torch.argsort(importance[start:end], descending=True, stable=True)
        for start, end in pairwise(cuts)
    ]
    return torch.cat(parts)


def _permute(tensor: torch.Tensor, dim: int, order: torch.Tensor) -> None:
    tensor.copy_(tensor.index_select(dim, order))


def _permute_bn(norm: torch.nn.BatchNorm2d, order: torch.Tensor) -> None:
    mean, var = norm.running_mean, norm.running_var
    assert mean is not None and var is not None  # batch_norm() tracks running statistics
    for tensor in (norm.weight, norm.bias, mean, var):
        _permute(tensor, 0, order)


@torch.no_grad()
def _sort_block(block: ElasticMBConv, keep_expand: Sequence[int]) -> None:
    ib, dw, pl = block.inverted_bottleneck, block.depth_conv, block.point_linear
    in_channels = ib.conv.conv.weight.shape[1]
    importance = pl.conv.conv.weight.abs().sum((0, 2, 3))
    order = grouped_order(importance, [space.middle_channels(in_channels, e) for e in keep_expand])
    _permute(pl.conv.conv.weight, 1, order)
    _permute(dw.conv.conv.weight, 0, order)
    _permute_bn(dw.bn.bn, order)
    _permute(ib.conv.conv.weight, 0, order)
    _permute_bn(ib.bn.bn, order)
    if "se" in dw:
        reduce_weight, reduce_bias, expand_weight, expand_bias = dw.se.fc.weights_and_biases()
        _permute(expand_weight, 0, order)
        _permute(expand_bias, 0, order)
        _permute(reduce_weight, 1, order)
        hidden = grouped_order(expand_weight.abs().sum((0, 2, 3)), [])
        _permute(expand_weight, 1, hidden)
        _permute(reduce_weight, 0, hidden)
        _permute(reduce_bias, 0, hidden)


def sort_channels(supernet: ElasticSupernet, keep_expand: Sequence[int] = ()) -> None:
    """Sort the middle channels of every elastic block in place, keeping the channel set of
    each expand ratio in `keep_expand` (e.g. (4, 6) when adding 3 to {4, 6})."""
    for b in range(supernet.family.n_blocks):
        _sort_block(supernet.elastic_block(b).conv, keep_expand)
