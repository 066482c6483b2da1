"""The elastic OFA-ResNet50 supernet (`ofa_resnet50`: stem and stage depth, expand ratio per
block, width multiplier of the stem and of each stage, any resolution).

As the MobileNetV3 supernets, the subnet to run is passed to `forward` (or set with
`set_active_subnet`), and state-dict keys are the reference's `OFAResNets`, so its
checkpoints load unchanged.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import replace
from typing import cast

import torch
from torch import nn
from torch.nn import functional as F

from ofa import space
from ofa.nn.elastic import ElasticBatchNorm2d, ElasticConv2d
from ofa.nn.layers import (
    Bottleneck,
    ConvLayer,
    GlobalAvgPool,
    ResidualBlock,
    ResNet,
    build_network,
    set_bn_eps,
)
from ofa.plan import layer_plan
from ofa.resnet import (
    BASE_DEPTHS,
    EXPAND_CHOICES,
    FAMILY,
    MAX_EXTRA,
    STAGE_STRIDES,
    SUPERNET,
    WIDTH_MULTS,
    ResNetConfig,
    stage_blocks,
    stage_width,
    stem_widths,
)

__all__ = ["OFAResNet50"]


class ElasticConvLayer(nn.Module):
    """conv -> BN -> ReLU over the first channels (the reference's `DynamicConvLayer`)."""

    def __init__(self, max_in: int, max_out: int, kernel_size: int, stride: int) -> None:
        super().__init__()
        self.conv = ElasticConv2d(max_in, max_out, kernel_size, stride)
        self.bn = ElasticBatchNorm2d(max_out)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor, out_channels: int) -> torch.Tensor:
        return self.act(self.bn(self.conv(x, out_channels)))


class _ConvBN(nn.ModuleDict):
    """The reference's layer dicts (keys `conv.*`, `bn.*`), their entries' types declared."""

    conv: ElasticConv2d
    bn: ElasticBatchNorm2d


class _Downsample(_ConvBN):
    avg_pool: nn.AvgPool2d


class ElasticBottleneck(nn.Module):
    """A bottleneck whose output width and expand ratio are chosen per call."""

    def __init__(self, max_in: int, max_out: int, stride: int, identity: bool) -> None:
        super().__init__()
        max_mid = space.make_divisible(round(max_out * max(EXPAND_CHOICES)))
        self.conv1 = ElasticConvLayer(max_in, max_mid, 1, 1)
        self.conv2 = ElasticConvLayer(max_mid, max_mid, 3, stride)
        self.conv3 = _ConvBN(
            OrderedDict(conv=ElasticConv2d(max_mid, max_out), bn=ElasticBatchNorm2d(max_out))
        )
        self.downsample = (
            None
            if identity
            else _Downsample(
                OrderedDict(
                    avg_pool=nn.AvgPool2d(stride, stride, 0, ceil_mode=True),
                    conv=ElasticConv2d(max_in, max_out),
                    bn=ElasticBatchNorm2d(max_out),
                )
            )
        )

    def forward(self, x: torch.Tensor, out_channels: int, expand_ratio: float) -> torch.Tensor:
        mid = space.make_divisible(round(out_channels * expand_ratio))
        y = self.conv2(self.conv1(x, mid), mid)
        y = self.conv3.bn(self.conv3.conv(y, out_channels))
        down = self.downsample
        shortcut = x if down is None else down.bn(down.conv(down.avg_pool(x), out_channels))
        return F.relu(y + shortcut)


class ElasticLinear(nn.Module):
    """A linear layer over the first input features (key `linear.*`)."""

    def __init__(self, max_in: int, out_features: int) -> None:
        super().__init__()
        self.linear = nn.Linear(max_in, out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.linear.weight[:, : x.size(1)], self.linear.bias)


class ElasticClassifier(nn.Module):
    """Dropout and an elastic linear layer (keys `linear.linear.*`, as the reference's)."""

    def __init__(self, max_in: int, n_classes: int, dropout: float) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.linear = ElasticLinear(max_in, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self.dropout(torch.flatten(x, 1)))


class OFAResNet50(nn.Module):
    """OFA's elastic ResNet50 (`ofa_resnet50`, the reference's `OFAResNets` with depths
    0/1/2, expand ratios 0.2/0.25/0.35 and width multipliers 0.65/0.8/1.0)."""

    family = FAMILY
    name = SUPERNET
    width = 1.0  # the zoo's one width for it: ResNet50's width multipliers are per subnet

    def __init__(self, n_classes: int = space.N_CLASSES, dropout: float = 0.0) -> None:
        super().__init__()
        largest = ResNetConfig.largest()
        middle, stem_out = stem_widths(largest.w)
        self.input_stem = nn.ModuleList(
            [
                ElasticConvLayer(3, middle, 3, 2),
                ResidualBlock(ElasticConvLayer(middle, middle, 3, 1), residual=True),
                ElasticConvLayer(middle, stem_out, 3, 1),
            ]
        )
        self.max_pooling = nn.MaxPool2d(3, 2, 1)
        blocks, channels = [], stem_out
        for stage, base in enumerate(BASE_DEPTHS):
            out = stage_width(stage, len(WIDTH_MULTS) - 1)
            for i in range(base + MAX_EXTRA):
                stride = STAGE_STRIDES[stage] if i == 0 else 1
                blocks.append(ElasticBottleneck(channels, out, stride, identity=i > 0))
                channels = out
        self.blocks = nn.ModuleList(blocks)
        self.global_avg_pool = GlobalAvgPool()
        self.classifier = ElasticClassifier(channels, n_classes, dropout)
        set_bn_eps(self, FAMILY)
        self.active_subnet = largest

    @torch.no_grad()
    def zero_last_gamma(self) -> None:
        """OFA's start for training from scratch: each bottleneck with an identity shortcut
        (14 of the 18) begins as that identity (its last BN's scale 0), so their sums do not
        blow up the first steps' activations."""
        for block in self.blocks:
            if block.downsample is None:
                block.conv3.bn.bn.weight.zero_()

    def set_active_subnet(self, subnet: ResNetConfig) -> None:
        """The subnet `forward` runs when it is not given one."""
        self.active_subnet = self._check(subnet)

    @staticmethod
    def _check(subnet: ResNetConfig) -> ResNetConfig:
        if not isinstance(subnet, ResNetConfig):
            raise TypeError(f"subnet: expected a ResNetConfig, got {type(subnet).__name__}")
        return subnet

    def _stem(self, index: int) -> ElasticConvLayer:
        layer = self.input_stem[index]
        return cast(ElasticConvLayer, layer.conv if isinstance(layer, ResidualBlock) else layer)

    def _block(self, b: int) -> ElasticBottleneck:
        return cast(ElasticBottleneck, self.blocks[b])

    def forward(self, x: torch.Tensor, subnet: ResNetConfig | None = None) -> torch.Tensor:
        subnet = self.active_subnet if subnet is None else self._check(subnet)
        middle, stem_out = stem_widths(subnet.w)
        x = self._stem(0)(x, middle)
        if not subnet.stem_skipped:
            x = x + self._stem(1)(x, middle)
        x = self.max_pooling(self._stem(2)(x, stem_out))
        for stage in range(len(BASE_DEPTHS)):
            out = stage_width(stage, subnet.w[stage + 2])
            for b in stage_blocks(stage)[: BASE_DEPTHS[stage] + subnet.d[stage + 1]]:
                x = self._block(b)(x, out, subnet.e[b])
        return self.classifier(self.global_avg_pool(x))

    @torch.no_grad()
    def get_active_subnet(self, subnet: ResNetConfig | None = None) -> ResNet:
        """A static `ResNet` with this subnet's weights and BN statistics copied in."""
        subnet = self.active_subnet if subnet is None else self._check(subnet)
        plan = layer_plan(subnet)
        plan[-1] = replace(plan[-1], out_shape=(self.classifier.linear.linear.out_features,))
        net = cast(ResNet, build_network(plan, dropout=self.classifier.dropout.p))
        stems = [0] + ([] if subnet.stem_skipped else [1]) + [2]
        for target, index in zip(net.input_stem, stems, strict=True):
            conv = target.conv if isinstance(target, ResidualBlock) else target
            _copy_conv_bn(self._stem(index), cast(ConvLayer, conv))
        for target, b in zip(net.blocks, subnet.active_blocks, strict=True):
            _copy_bottleneck(self._block(b), cast(Bottleneck, target))
        linear = cast(nn.Linear, net.classifier.linear)
        linear.weight.copy_(self.classifier.linear.linear.weight[:, : linear.in_features])
        linear.bias.copy_(self.classifier.linear.linear.bias)
        return net.train(self.training)


def _copy_bn(target: nn.BatchNorm2d, source: ElasticBatchNorm2d) -> None:
    channels = target.num_features
    for name in ("weight", "bias", "running_mean", "running_var"):
        getattr(target, name).data.copy_(getattr(source.bn, name).data[:channels])


def _copy_conv_bn(source: ElasticConvLayer | _ConvBN, target: nn.Module) -> None:
    """conv weight (first filters over first channels) and BN statistics."""
    weight = cast(nn.Conv2d, target.conv).weight
    weight.copy_(source.conv.active_weight(weight.size(0), weight.size(1)))
    _copy_bn(cast(nn.BatchNorm2d, target.bn), source.bn)


def _copy_bottleneck(source: ElasticBottleneck, target: Bottleneck) -> None:
    _copy_conv_bn(source.conv1, target.conv1)
    _copy_conv_bn(source.conv2, target.conv2)
    _copy_conv_bn(source.conv3, target.conv3)
    if source.downsample is not None and target.downsample is not None:
        _copy_conv_bn(source.downsample, target.downsample)
