"""The elastic OFA supernets, MobileNetV3 and ProxylessNAS (kernel, expand ratio, depth, any
resolution).

The subnet to run is passed to `forward` (or set on the instance with `set_active_subnet`):
no class-level flags and no global state, so two threads can run two subnets of one
supernet. State-dict keys are the reference's, so official checkpoints load unchanged.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import replace
from typing import cast

import torch
from torch import nn
from torch.nn import functional as F

from ofa import space
from ofa.config import SubnetConfig
from ofa.nn.elastic import (
    ElasticBatchNorm2d,
    ElasticConv2d,
    ElasticDepthwiseConv2d,
    ElasticSqueezeExcite,
)
from ofa.nn.layers import (
    ConvLayer,
    LinearLayer,
    MBConv,
    MobileNetV3,
    ProxylessNASNet,
    ResidualBlock,
    activation,
    build_network,
    set_bn_eps,
)
from ofa.nn.resnet_supernet import OFAResNet50
from ofa.plan import MBCONV, AnyConfig, layer_plan
from ofa.resnet import ResNetConfig

__all__ = [
    "ElasticSupernet",
    "OFAMobileNetV3",
    "OFAProxylessNAS",
    "SUPERNETS",
    "build_supernet",
    "mbconv_supernet",
    "static_subnet",
    "seeded_supernet",
]


class _InvertedBottleneck(nn.ModuleDict):
    """OFA's layer dicts (keys `conv.*`, `bn.*`) with their entries' types declared."""

    conv: ElasticConv2d
    bn: ElasticBatchNorm2d
    act: nn.Module


class _DepthConv(nn.ModuleDict):
    conv: ElasticDepthwiseConv2d
    bn: ElasticBatchNorm2d
    act: nn.Module
    se: ElasticSqueezeExcite  # only in stages with squeeze-excite: test `"se" in depth_conv`


class _PointLinear(nn.ModuleDict):
    conv: ElasticConv2d
    bn: ElasticBatchNorm2d


class ElasticMBConv(nn.Module):
    """MBConv whose kernel size and expand ratio are chosen per call."""

    def __init__(
        self, in_channels: int, out_channels: int, stride: int, act: str, use_se: bool
    ) -> None:
        super().__init__()
        self.out_channels = out_channels
        max_mid = space.middle_channels(in_channels, max(space.EXPAND_CHOICES))
        self.inverted_bottleneck = _InvertedBottleneck(
            OrderedDict(
                conv=ElasticConv2d(in_channels, max_mid),
                bn=ElasticBatchNorm2d(max_mid),
                act=activation(act),
            )
        )
        depth_conv = OrderedDict(
            conv=ElasticDepthwiseConv2d(max_mid, stride),
            bn=ElasticBatchNorm2d(max_mid),
            act=activation(act),
        )
        if use_se:
            depth_conv["se"] = ElasticSqueezeExcite(max_mid)
        self.depth_conv = _DepthConv(depth_conv)
        self.point_linear = _PointLinear(
            OrderedDict(
                conv=ElasticConv2d(max_mid, out_channels), bn=ElasticBatchNorm2d(out_channels)
            )
        )

    def forward(self, x: torch.Tensor, kernel_size: int, expand_ratio: int) -> torch.Tensor:
        mid = space.middle_channels(x.size(1), expand_ratio)
        ib, dw, pl = self.inverted_bottleneck, self.depth_conv, self.point_linear
        x = ib.act(ib.bn(ib.conv(x, mid)))
        x = dw.act(dw.bn(dw.conv(x, kernel_size)))
        if "se" in dw:
            x = dw.se(x)
        return pl.bn(pl.conv(x, self.out_channels))


def _copy_bn(target: nn.BatchNorm2d, source: nn.BatchNorm2d) -> None:
    channels = target.num_features
    for name in ("weight", "bias", "running_mean", "running_var"):
        getattr(target, name).data.copy_(getattr(source, name).data[:channels])


class ElasticSupernet(nn.Module):
    """An OFA supernet of one family (`ofa.space.FAMILIES`): first conv, `blocks[0]`, the
    elastic blocks, and the family's head, whose modules `head` names in order."""

    family = space.MOBILENET_V3
    head: tuple[str, ...] = ()
    classifier: LinearLayer

    def __init__(
        self, width: float, n_classes: int = space.N_CLASSES, dropout: float = 0.1
    ) -> None:
        super().__init__()
        family = self.family
        self.width = SubnetConfig.largest(w=width, family=family.name).w  # validates it
        widths = family.stage_widths(self.width)
        first, block0 = widths[0], widths[1]
        self.first_conv = ConvLayer(3, first, 3, 2, family.first_act)
        blocks: list[nn.Module] = [
            ResidualBlock(
                MBConv(first, block0, first, 3, 1, family.block0_act, False, expand=False),
                first == block0,
            )
        ]
        channels = block0
        for b in range(family.n_blocks):
            stage = family.stage_of(b)
            tail = stage == family.n_stages
            first_in_stage = tail or b % family.max_depth == 0
            out = widths[2 + stage]
            conv = ElasticMBConv(
                channels,
                out,
                family.stage_strides[stage] if first_in_stage and not tail else 1,
                family.stage_acts[min(stage, family.n_stages - 1)],
                not tail and family.stage_se[stage],
            )
            blocks.append(ResidualBlock(conv, residual=not first_in_stage))
            channels = out
        self.blocks = nn.ModuleList(blocks)
        self._build_head(widths, channels, n_classes, dropout)
        set_bn_eps(self, family.name)
        self.active_subnet = SubnetConfig.largest(w=self.width, family=family.name)

    def _build_head(
        self, widths: tuple[int, ...], channels: int, n_classes: int, dropout: float
    ) -> None:
        raise NotImplementedError

    def _head(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    @property
    def name(self) -> str:
        """OFA's model-zoo name of this supernet (`ofa_mbv3_d234_e346_k357_w1.2`, ...)."""
        return self.family.supernet(self.width)

    def set_active_subnet(self, subnet: SubnetConfig) -> None:
        """The subnet `forward` runs when it is not given one."""
        self.active_subnet = self._check(subnet)

    def _check(self, subnet: SubnetConfig) -> SubnetConfig:
        if not isinstance(subnet, SubnetConfig):
            raise TypeError(f"subnet: expected a SubnetConfig, got {type(subnet).__name__}")
        if subnet.family != self.family.name:
            raise ValueError(
                f"family: the subnet is a {subnet.family_space.title} subnet, this supernet "
                f"is {self.family.title}"
            )
        if subnet.w != self.width:
            raise ValueError(
                f"w: the subnet is for width {subnet.w}, this supernet is w{self.width}"
            )
        return subnet

    def elastic_block(self, b: int) -> ResidualBlock[ElasticMBConv]:
        """Elastic block `b` (0..19 for MobileNetV3), `blocks[b + 1]`."""
        return cast("ResidualBlock[ElasticMBConv]", self.blocks[b + 1])  # ModuleList: Module

    def forward(self, x: torch.Tensor, subnet: SubnetConfig | None = None) -> torch.Tensor:
        subnet = self.active_subnet if subnet is None else self._check(subnet)
        x = self.blocks[0](self.first_conv(x))
        for b in subnet.active_blocks:
            block = self.elastic_block(b)
            y = block.conv(x, subnet.ks[b], subnet.e[b])
            x = y + x if block.residual else y
        return self._head(x)

    @torch.no_grad()
    def get_active_subnet(
        self, subnet: SubnetConfig | None = None
    ) -> MobileNetV3 | ProxylessNASNet:
        """A static network with this subnet's weights and BN statistics copied in."""
        subnet = self.active_subnet if subnet is None else self._check(subnet)
        plan = layer_plan(subnet)
        # the plan counts ImageNet's 1000 classes; a supernet trained on other data has others
        plan[-1] = replace(plan[-1], out_shape=(self.classifier.linear.out_features,))
        net = cast(
            "MobileNetV3 | ProxylessNASNet", build_network(plan, dropout=self.classifier.dropout.p)
        )
        for name in ("first_conv", *self.head):
            getattr(net, name).load_state_dict(getattr(self, name).state_dict())
        net.blocks[0].load_state_dict(self.blocks[0].state_dict())
        block_specs = [spec for spec in plan if spec.kind == MBCONV][1:]
        targets = [cast("ResidualBlock[MBConv]", block) for block in net.blocks[1:]]
        for target, b, spec in zip(targets, subnet.active_blocks, block_specs, strict=True):
            self._copy_block(
                self.elastic_block(b).conv, target.conv, spec.in_channels, spec.mid, spec.kernel
            )
        return net.train(self.training)

    @staticmethod
    def _copy_block(
        source: ElasticMBConv, target: MBConv, in_channels: int, mid: int, kernel_size: int
    ) -> None:
        ib, dw, pl = source.inverted_bottleneck, source.depth_conv, source.point_linear
        expand = target.inverted_bottleneck
        assert expand is not None  # every elastic block has its 1x1 expansion
        expand.conv.weight.copy_(ib.conv.active_weight(mid, in_channels))
        _copy_bn(expand.bn, ib.bn.bn)
        target.depth_conv.conv.weight.copy_(dw.conv.active_weight(mid, kernel_size))
        _copy_bn(target.depth_conv.bn, dw.bn.bn)
        if "se" in dw:
            for param, value in zip(
                target.depth_conv.se.fc.weights_and_biases(),
                dw.se.active_params(mid),
                strict=True,
            ):
                param.copy_(value)
        target.point_linear.conv.weight.copy_(
            pl.conv.active_weight(target.point_linear.conv.out_channels, mid)
        )
        _copy_bn(target.point_linear.bn, pl.bn.bn)


class OFAMobileNetV3(ElasticSupernet):
    """OFA's elastic MobileNetV3 (`ofa_mbv3_d234_e346_k357_w{width}`)."""

    family = space.MOBILENET_V3
    head = ("final_expand_layer", "feature_mix_layer", "classifier")

    def __init__(
        self, width: float = 1.0, n_classes: int = space.N_CLASSES, dropout: float = 0.1
    ) -> None:
        super().__init__(width, n_classes, dropout)

    def _build_head(
        self, widths: tuple[int, ...], channels: int, n_classes: int, dropout: float
    ) -> None:
        self.final_expand_layer = ConvLayer(channels, widths[7], 1, 1, "h_swish")
        self.feature_mix_layer = ConvLayer(widths[7], widths[8], 1, 1, "h_swish", use_bn=False)
        self.classifier = LinearLayer(widths[8], n_classes, dropout)

    def _head(self, x: torch.Tensor) -> torch.Tensor:
        x = F.adaptive_avg_pool2d(self.final_expand_layer(x), 1)
        return self.classifier(self.feature_mix_layer(x))


class OFAProxylessNAS(ElasticSupernet):
    """OFA's elastic ProxylessNAS (`ofa_proxyless_d234_e346_k357_w1.3`)."""

    family = space.PROXYLESS
    head = ("feature_mix_layer", "classifier")

    def __init__(
        self, width: float = 1.3, n_classes: int = space.N_CLASSES, dropout: float = 0.1
    ) -> None:
        super().__init__(width, n_classes, dropout)

    def _build_head(
        self, widths: tuple[int, ...], channels: int, n_classes: int, dropout: float
    ) -> None:
        self.feature_mix_layer = ConvLayer(channels, widths[-1], 1, 1, self.family.head_act)
        self.classifier = LinearLayer(widths[-1], n_classes, dropout)

    def _head(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(F.adaptive_avg_pool2d(self.feature_mix_layer(x), 1))


SUPERNETS: dict[str, type[ElasticSupernet]] = {
    cls.family.name: cls for cls in (OFAMobileNetV3, OFAProxylessNAS)
}


def build_supernet(
    name: str, n_classes: int = space.N_CLASSES, dropout: float | None = None
) -> ElasticSupernet | OFAResNet50:
    """The supernet OFA's model zoo calls `name` (a config's `supernet`), freshly built,
    for `n_classes` (dropout: the family's default, 0.1, or 0 for ResNet50, when None)."""
    if name == OFAResNet50.name:
        return OFAResNet50(n_classes, 0.0 if dropout is None else dropout)
    return mbconv_supernet(name, n_classes, 0.1 if dropout is None else dropout)


def mbconv_supernet(
    name: str, n_classes: int = space.N_CLASSES, dropout: float = 0.1
) -> ElasticSupernet:
    """MobileNetV3 or ProxylessNAS supernet `name` for `n_classes`, freshly built."""
    for family in space.FAMILIES.values():
        for width in family.width_choices:
            if family.supernet(width) == name:
                return SUPERNETS[family.name](width, n_classes=n_classes, dropout=dropout)
    known = [f.supernet(w) for f in space.FAMILIES.values() for w in f.width_choices]
    raise ValueError(f"supernet: expected one of {', '.join(known)}, got {name!r}")


def static_subnet(supernet: ElasticSupernet | OFAResNet50, config: AnyConfig) -> nn.Module:
    """`config`'s static network with `supernet`'s weights; a ValueError naming both
    supernets when the config is not one of its subnets."""
    if isinstance(supernet, OFAResNet50) and isinstance(config, ResNetConfig):
        return supernet.get_active_subnet(config)
    if isinstance(supernet, ElasticSupernet) and isinstance(config, SubnetConfig):
        if supernet.name == config.supernet:
            return supernet.get_active_subnet(config)
    raise ValueError(
        f"supernet: {config.id} is a subnet of {config.supernet}, not of {supernet.name}"
    )


def seeded_supernet(name: str, seed: int = 0) -> ElasticSupernet | OFAResNet50:
    """Supernet `name` with random weights drawn from `seed` (the global RNG left alone):
    the same weights, and so the same exported bytes, in every process. Latency does not
    depend on weight values, so campaigns measure these when no checkpoint is given."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build_supernet(name).eval()
