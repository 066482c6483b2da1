"""Elastic building blocks of the supernets: convolutions, batch norm and squeeze-excite
that run on the first channels (and, for the depthwise conv, the centre of the kernel) of
their largest form. Child names reproduce the reference's dynamic layers' state-dict keys."""

from __future__ import annotations

from collections import OrderedDict
from itertools import pairwise

import torch
from torch import nn
from torch.nn import functional as F

from ofa import space
from ofa.nn.layers import SqueezeExciteFC, batch_norm

__all__ = ["ElasticConv2d", "ElasticDepthwiseConv2d", "ElasticBatchNorm2d", "ElasticSqueezeExcite"]


class ElasticConv2d(nn.Module):
    """A convolution (1x1 unless told) that uses the first `out` filters over the first
    `in` channels, with 'same' padding."""

    def __init__(self, max_in: int, max_out: int, kernel_size: int = 1, stride: int = 1) -> None:
        super().__init__()
        self.stride = stride
        self.conv = nn.Conv2d(max_in, max_out, kernel_size, stride, bias=False)

    def active_weight(self, out_channels: int, in_channels: int) -> torch.Tensor:
        return self.conv.weight[:out_channels, :in_channels]

    def forward(self, x: torch.Tensor, out_channels: int) -> torch.Tensor:
        weight = self.active_weight(out_channels, x.size(1)).contiguous()
        return F.conv2d(x, weight, None, self.stride, weight.size(-1) // 2)


class ElasticDepthwiseConv2d(nn.Module):
    """Depthwise conv with one 7x7 kernel per channel; smaller kernels are its centre,
    passed through learned per-layer transforms (`7to5_matrix`, `5to3_matrix`)."""

    def __init__(self, max_channels: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        self.kernel_sizes = tuple(sorted(space.KERNEL_CHOICES))
        largest = self.kernel_sizes[-1]
        self.conv = nn.Conv2d(
            max_channels, max_channels, largest, stride, groups=max_channels, bias=False
        )
        for small, large in pairwise(self.kernel_sizes):
            self.register_parameter(f"{large}to{small}_matrix", nn.Parameter(torch.eye(small**2)))

    def active_weight(self, channels: int, kernel_size: int) -> torch.Tensor:
        weight = self.conv.weight[:channels]
        for large, small in pairwise(self.kernel_sizes[::-1]):
            if large <= kernel_size:
                break
            start = (large - small) // 2
            centre = weight[:, :, start : start + small, start : start + small].reshape(
                -1, small**2
            )
            matrix = getattr(self, f"{large}to{small}_matrix")
            weight = F.linear(centre, matrix).reshape(channels, 1, small, small)
        return weight

    def forward(self, x: torch.Tensor, kernel_size: int) -> torch.Tensor:
        channels = x.size(1)
        weight = self.active_weight(channels, kernel_size).contiguous()
        return F.conv2d(x, weight, None, self.stride, kernel_size // 2, 1, channels)


class ElasticBatchNorm2d(nn.Module):
    """Batch norm over the first C channels of a wider one (statistics updated in place)."""

    def __init__(self, max_channels: int) -> None:
        super().__init__()
        self.bn = batch_norm(max_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bn, channels = self.bn, x.size(1)
        mean, var, tracked = bn.running_mean, bn.running_var, bn.num_batches_tracked
        assert mean is not None and var is not None and tracked is not None  # batch_norm() tracks
        momentum = 0.0
        if bn.training and bn.track_running_stats:
            tracked += 1
            momentum = bn.momentum if bn.momentum is not None else 1.0 / float(tracked)
        return F.batch_norm(
            x,
            mean[:channels],
            var[:channels],
            bn.weight[:channels],
            bn.bias[:channels],
            bn.training or not bn.track_running_stats,
            momentum,
            bn.eps,
        )


class ElasticSqueezeExcite(nn.Module):
    """Squeeze-excite over the first C channels, hidden width `se_channels(C)`."""

    def __init__(self, max_channels: int) -> None:
        super().__init__()
        hidden = space.se_channels(max_channels)
        self.fc = SqueezeExciteFC(
            OrderedDict(
                reduce=nn.Conv2d(max_channels, hidden, 1, bias=True),
                relu=nn.ReLU(inplace=True),
                expand=nn.Conv2d(hidden, max_channels, 1, bias=True),
                h_sigmoid=nn.Hardsigmoid(inplace=True),
            )
        )

    def active_params(self, channels: int) -> tuple[torch.Tensor, ...]:
        """(reduce weight, reduce bias, expand weight, expand bias) for C channels."""
        hidden = space.se_channels(channels)
        reduce_weight, reduce_bias, expand_weight, expand_bias = self.fc.weights_and_biases()
        return (
            reduce_weight[:hidden, :channels],
            reduce_bias[:hidden],
            expand_weight[:channels, :hidden],
            expand_bias[:channels],
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w1, b1, w2, b2 = self.active_params(x.size(1))
        y = F.relu(F.conv2d(x.mean((2, 3), keepdim=True), w1.contiguous(), b1))
        return x * F.hardsigmoid(F.conv2d(y, w2.contiguous(), b2))
