"""Static MBConv building blocks and the static network built from a layer plan.

Child names are part of the checkpoint format: they reproduce the state-dict keys of OFA's
static `MobileNetV3` and `ProxylessNASNets` (`blocks.3.conv.depth_conv.se.fc.reduce.weight`,
...), so never rename them casually.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Generic, TypeVar

import torch
from torch import nn
from torch.nn import functional as F

from ofa import space
from ofa.plan import (
    AVG_POOL,
    BOTTLENECK,
    FEATURE_MIX,
    FINAL_EXPAND,
    FIRST_CONV,
    LOGITS,
    MAX_POOL,
    MBCONV,
    STEM_CONV,
    LayerSpec,
)
from ofa.resnet import FAMILY as RESNET50

__all__ = [
    "activation",
    "ConvLayer",
    "SqueezeExcite",
    "MBConv",
    "ResidualBlock",
    "LinearLayer",
    "GlobalAvgPool",
    "MobileNetV3",
    "ProxylessNASNet",
    "Bottleneck",
    "ResNet",
    "set_bn_eps",
    "build_layer",
    "build_network",
]


def activation(name: str) -> nn.Module:
    """OFA's activations: relu, relu6 (ProxylessNAS) and h_swish = x * relu6(x + 3) / 6
    (exported as HardSwish)."""
    if name == "relu":
        return nn.ReLU(inplace=True)
    if name == "relu6":
        return nn.ReLU6(inplace=True)
    if name == "h_swish":
        return nn.Hardswish(inplace=True)
    raise ValueError(f"act: expected 'relu', 'relu6' or 'h_swish', got {name!r}")


def batch_norm(channels: int) -> nn.BatchNorm2d:
    """MobileNetV3's BN; a network of another family gets its eps from `set_bn_eps`."""
    return nn.BatchNorm2d(channels, eps=space.BN_EPS, momentum=space.BN_MOMENTUM)


def set_bn_eps(module: nn.Module, family: str) -> None:
    """Every BN of `module` with the family's eps (as OFA's `set_bn_param`); ResNet50's is
    MobileNetV3's."""
    eps = space.BN_EPS if family == RESNET50 else space.family_named(family).bn_eps
    for child in module.modules():
        if isinstance(child, nn.BatchNorm2d):
            child.eps = eps


class ConvLayer(nn.Sequential):
    """conv -> [bn] -> act with 'same' padding; keys `conv.weight`, `bn.*`."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 1,
        stride: int = 1,
        act: str = "h_swish",
        use_bn: bool = True,
    ) -> None:
        layers: OrderedDict[str, nn.Module] = OrderedDict(
            conv=nn.Conv2d(
                in_channels, out_channels, kernel_size, stride, kernel_size // 2, bias=False
            )
        )
        if use_bn:
            layers["bn"] = batch_norm(out_channels)
        layers["act"] = activation(act)
        super().__init__(layers)


class SqueezeExciteFC(nn.Sequential):
    """Squeeze-excite's `fc` (keys `fc.reduce.*`, `fc.expand.*`), its layers' types declared."""

    reduce: nn.Conv2d
    expand: nn.Conv2d

    def weights_and_biases(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(reduce weight, reduce bias, expand weight, expand bias)."""
        reduce, expand = self.reduce, self.expand
        assert reduce.bias is not None and expand.bias is not None  # built with bias=True
        return reduce.weight, reduce.bias, expand.weight, expand.bias


class SqueezeExcite(nn.Module):
    """x * hsigmoid(expand(relu(reduce(mean(x))))); keys `fc.reduce.*`, `fc.expand.*`."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        hidden = space.se_channels(channels)
        self.fc = SqueezeExciteFC(
            OrderedDict(
                reduce=nn.Conv2d(channels, hidden, 1, bias=True),
                relu=nn.ReLU(inplace=True),
                expand=nn.Conv2d(hidden, channels, 1, bias=True),
                h_sigmoid=nn.Hardsigmoid(inplace=True),
            )
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.fc(x.mean((2, 3), keepdim=True))


class ConvBN(nn.Sequential):
    """One conv -> bn [-> act] [-> se] stage of an MBConv, its layers' types declared."""

    conv: nn.Conv2d
    bn: nn.BatchNorm2d
    se: SqueezeExcite  # depthwise stages of squeeze-excite stages only: test `"se" in ...`


class MBConv(nn.Module):
    """Inverted residual: [1x1 expand] -> kxk depthwise [-> SE] -> 1x1 project."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        mid_channels: int,
        kernel_size: int,
        stride: int,
        act: str,
        use_se: bool,
        expand: bool = True,
    ) -> None:
        super().__init__()
        self.inverted_bottleneck = (
            ConvBN(
                OrderedDict(
                    conv=nn.Conv2d(in_channels, mid_channels, 1, bias=False),
                    bn=batch_norm(mid_channels),
                    act=activation(act),
                )
            )
            if expand
            else None
        )
        depth_conv: OrderedDict[str, nn.Module] = OrderedDict(
            conv=nn.Conv2d(
                mid_channels,
                mid_channels,
                kernel_size,
                stride,
                kernel_size // 2,
                groups=mid_channels,
                bias=False,
            ),
            bn=batch_norm(mid_channels),
            act=activation(act),
        )
        if use_se:
            depth_conv["se"] = SqueezeExcite(mid_channels)
        self.depth_conv = ConvBN(depth_conv)
        self.point_linear = ConvBN(
            OrderedDict(
                conv=nn.Conv2d(mid_channels, out_channels, 1, bias=False),
                bn=batch_norm(out_channels),
            )
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.inverted_bottleneck is not None:
            x = self.inverted_bottleneck(x)
        return self.point_linear(self.depth_conv(x))


ConvT = TypeVar("ConvT", bound=nn.Module)


class ResidualBlock(nn.Module, Generic[ConvT]):
    """`conv(x) + x` when the block keeps its shape, else `conv(x)`; key prefix `conv.`."""

    def __init__(self, conv: ConvT, residual: bool) -> None:
        super().__init__()
        self.conv = conv
        self.residual = residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x) + x if self.residual else self.conv(x)


class LinearLayer(nn.Module):
    """Dropout -> linear, flattening its input; keys `linear.*`."""

    def __init__(self, in_features: int, out_features: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.linear = nn.Linear(in_features, out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self.dropout(torch.flatten(x, 1)))


class GlobalAvgPool(nn.Module):
    """Mean over H and W, keeping them (exported as one GlobalAveragePool)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.adaptive_avg_pool2d(x, 1)


class MobileNetV3(nn.Module):
    """A static subnet: what `OFAMobileNetV3.get_active_subnet` returns and what we export."""

    def __init__(
        self,
        first_conv: nn.Module,
        blocks: list[nn.Module],
        final_expand_layer: nn.Module,
        feature_mix_layer: nn.Module,
        classifier: nn.Module,
    ) -> None:
        super().__init__()
        self.first_conv = first_conv
        self.blocks = nn.ModuleList(blocks)
        self.final_expand_layer = final_expand_layer
        self.global_avg_pool = GlobalAvgPool()
        self.feature_mix_layer = feature_mix_layer
        self.classifier = classifier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.first_conv(x)
        for block in self.blocks:
            x = block(x)
        x = self.global_avg_pool(self.final_expand_layer(x))
        return self.classifier(self.feature_mix_layer(x))


class ProxylessNASNet(nn.Module):
    """A static ProxylessNAS subnet (OFA's `ProxylessNASNets`): the head is a feature-mix
    1x1 conv with BN at full resolution, then pooling and the classifier."""

    def __init__(
        self,
        first_conv: nn.Module,
        blocks: list[nn.Module],
        feature_mix_layer: nn.Module,
        classifier: nn.Module,
    ) -> None:
        super().__init__()
        self.first_conv = first_conv
        self.blocks = nn.ModuleList(blocks)
        self.feature_mix_layer = feature_mix_layer
        self.global_avg_pool = GlobalAvgPool()
        self.classifier = classifier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.first_conv(x)
        for block in self.blocks:
            x = block(x)
        return self.classifier(self.global_avg_pool(self.feature_mix_layer(x)))


class Bottleneck(nn.Module):
    """OFA-ResNet50's bottleneck: 1x1, 3x3 (with the stride), 1x1, added to the input or to
    its average-pooled 1x1 projection (`downsample`), then ReLU."""

    def __init__(self, in_channels: int, out_channels: int, mid: int, stride: int, identity: bool):
        super().__init__()
        self.conv1 = ConvLayer(in_channels, mid, 1, 1, "relu")
        self.conv2 = ConvLayer(mid, mid, 3, stride, "relu")
        self.conv3 = ConvBN(
            OrderedDict(
                conv=nn.Conv2d(mid, out_channels, 1, bias=False), bn=batch_norm(out_channels)
            )
        )
        self.downsample = (
            None
            if identity
            else ConvBN(
                OrderedDict(
                    avg_pool=nn.AvgPool2d(stride, stride, 0, ceil_mode=True),
                    conv=nn.Conv2d(in_channels, out_channels, 1, bias=False),
                    bn=batch_norm(out_channels),
                )
            )
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        return F.relu(self.conv3(self.conv2(self.conv1(x))) + shortcut)


class ResNet(nn.Module):
    """A static OFA-ResNet50 subnet (OFA's `ResNets`): the stem's convolutions, max pooling,
    bottlenecks, global pooling and the classifier."""

    def __init__(self, input_stem: list[nn.Module], blocks: list[nn.Module], classifier: nn.Module):
        super().__init__()
        self.input_stem = nn.ModuleList(input_stem)
        self.max_pooling = nn.MaxPool2d(3, 2, 1)
        self.blocks = nn.ModuleList(blocks)
        self.global_avg_pool = GlobalAvgPool()
        self.classifier = classifier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.input_stem:
            x = layer(x)
        x = self.max_pooling(x)
        for block in self.blocks:
            x = block(x)
        return self.classifier(self.global_avg_pool(x))


def build_layer(spec: LayerSpec, dropout: float = 0.0) -> nn.Module:
    """The static module that computes one layer of a plan (also a LUT entry on its own),
    its BN with the family's eps."""
    module = _static_layer(spec, dropout)
    set_bn_eps(module, spec.family)
    return module


def _static_layer(spec: LayerSpec, dropout: float) -> nn.Module:
    if spec.kind == FIRST_CONV:
        return ConvLayer(spec.in_channels, spec.out_channels, 3, 2, spec.act)
    if spec.kind == STEM_CONV:
        stem = ConvLayer(spec.in_channels, spec.out_channels, 3, 1, spec.act)
        return ResidualBlock(stem, residual=True) if spec.idskip else stem
    if spec.kind == MAX_POOL:
        return nn.MaxPool2d(3, 2, 1)
    if spec.kind == BOTTLENECK:
        return Bottleneck(spec.in_channels, spec.out_channels, spec.mid, spec.stride, spec.idskip)
    if spec.kind == MBCONV:
        conv = MBConv(
            spec.in_channels,
            spec.out_channels,
            spec.mid,
            spec.kernel,
            spec.stride,
            spec.act,
            spec.se,
            expand=spec.has_expand,
        )
        return ResidualBlock(conv, residual=spec.idskip)
    if spec.kind == FINAL_EXPAND:
        return ConvLayer(spec.in_channels, spec.out_channels, 1, 1, spec.act)
    if spec.kind == AVG_POOL:
        return GlobalAvgPool()
    if spec.kind == FEATURE_MIX:
        return ConvLayer(spec.in_channels, spec.out_channels, 1, 1, spec.act, use_bn=False)
    if spec.pools:
        return nn.Sequential(GlobalAvgPool(), LinearLayer(spec.in_channels, spec.out_channels))
    if spec.kind == LOGITS:
        return LinearLayer(spec.in_channels, spec.out_channels, dropout)
    raise ValueError(f"kind: unknown layer kind {spec.kind!r}")


def build_network(
    plan: list[LayerSpec], dropout: float = 0.0
) -> MobileNetV3 | ProxylessNASNet | ResNet:
    """The static network of a layer plan, freshly initialised."""
    if plan[0].family == RESNET50:
        return ResNet(
            [build_layer(spec) for spec in plan if spec.kind in (FIRST_CONV, STEM_CONV)],
            [build_layer(spec) for spec in plan if spec.kind == BOTTLENECK],
            build_layer(plan[-1], dropout),
        )
    by_kind = {spec.kind: spec for spec in plan if spec.kind != MBCONV}
    blocks = [build_layer(spec) for spec in plan if spec.kind == MBCONV]
    if plan[0].family == space.PROXYLESS.name:
        return ProxylessNASNet(
            build_layer(by_kind[FIRST_CONV]),
            blocks,
            build_layer(by_kind[FINAL_EXPAND]),
            LinearLayer(by_kind[LOGITS].in_channels, by_kind[LOGITS].out_channels, dropout),
        )
    return MobileNetV3(
        build_layer(by_kind[FIRST_CONV]),
        blocks,
        build_layer(by_kind[FINAL_EXPAND]),
        build_layer(by_kind[FEATURE_MIX]),
        build_layer(by_kind[LOGITS], dropout),
    )
