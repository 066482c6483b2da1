"""The layer plan of a subnet: every layer with its shapes, decoded from a config once.

The plan is the single place that turns a `SubnetConfig` into concrete layers. The static
network builder, the per-layer ONNX export, the LUT keys and the MAC/parameter counters all
walk it, so they agree by construction. No torch here.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Union

from ofa import space
from ofa.config import SubnetConfig

if TYPE_CHECKING:
    from ofa.resnet import ResNetConfig

AnyConfig = Union[SubnetConfig, "ResNetConfig"]

__all__ = ["LayerSpec", "layer_plan", "lut_keys", "count_macs", "count_params", "space_lut_specs"]

# LUT entry kinds, spelled as OFA's latency tables spell them. ProxylessNAS's tables have
# no AvgPool2D and Conv_2: its `Conv_1` is the feature-mix conv and `Logits` pools too.
FIRST_CONV = "Conv"
MBCONV = "expanded_conv"
FINAL_EXPAND = "Conv_1"
AVG_POOL = "AvgPool2D"
FEATURE_MIX = "Conv_2"
LOGITS = "Logits"
# OFA-ResNet50's (OFA publishes no ResNet50 table; ours spell keys in the same way).
STEM_CONV = "Conv_stem"  # the stem's 3x3 stride-1 convolutions (its first is FIRST_CONV)
MAX_POOL = "MaxPool2D"
BOTTLENECK = "bottleneck"  # 1x1, 3x3 (with the stride), 1x1; an avgpool-1x1 shortcut or not


@dataclass(frozen=True)
class LayerSpec:
    """One LUT-sized piece of a network. Shapes are (H, W, C) as OFA writes them;
    the `Logits` output is `(n_classes,)`. MBConv fields are 0 for the other kinds."""

    kind: str
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    mid: int = 0
    kernel: int = 0
    stride: int = 1
    idskip: bool = False
    se: bool = False
    act: str = ""
    has_expand: bool = False  # MBConv with a 1x1 expansion (all but `blocks[0]`)
    expand: int = 0  # MBConv expand ratio (1 for `blocks[0]`)
    family: str = space.MOBILENET_V3.name  # whose LUT spelling and BN settings

    @property
    def lut_key(self) -> str:
        """The key of this layer in the family's OFA latency table (MobileNetV3's
        `{r}_lookup_table.yaml`: the MBConv's middle channels, SE and h-swish; ProxylessNAS's
        `mobile_trim.yaml`: its expand ratio)."""
        parts = [
            self.kind,
            "input:" + "x".join(map(str, self.in_shape)),
            "output:" + "x".join(map(str, self.out_shape)),
        ]
        if self.kind == BOTTLENECK or (self.kind == MBCONV and self.family == space.PROXYLESS.name):
            expand = self.mid if self.kind == BOTTLENECK else self.expand  # ResNet50: channels
            parts += [
                f"expand:{expand}",
                f"kernel:{self.kernel}",
                f"stride:{self.stride}",
                f"idskip:{int(self.idskip)}",
            ]
        elif self.kind == STEM_CONV:
            parts.append(f"idskip:{int(self.idskip)}")
        elif self.kind == MBCONV:
            parts += [
                f"expand:{self.mid}",
                f"kernel:{self.kernel}",
                f"stride:{self.stride}",
                f"idskip:{int(self.idskip)}",
                f"se:{int(self.se)}",
                f"hs:{int(self.act == 'h_swish')}",
            ]
        return "-".join(parts)

    @property
    def pools(self) -> bool:
        """A `Logits` entry that pools its input first (ProxylessNAS's, above 1x1)."""
        return self.kind == LOGITS and self.in_shape[:-1] not in ((), (1, 1))

    @property
    def in_channels(self) -> int:
        return self.in_shape[-1]

    @property
    def out_channels(self) -> int:
        return self.out_shape[-1]

    def macs(self) -> int:
        """Multiply-accumulates of convolutions and linear layers, as OFA's counter counts."""
        h_in, w_in, c_in = self.in_shape if len(self.in_shape) == 3 else (1, 1, self.in_shape[-1])
        h_out, w_out = (
            (self.out_shape[0], self.out_shape[1]) if len(self.out_shape) == 3 else (1, 1)
        )
        c_out = self.out_channels
        if self.kind in (FIRST_CONV, STEM_CONV):
            return c_in * 9 * h_out * w_out * c_out
        if self.kind in (FINAL_EXPAND, FEATURE_MIX, LOGITS):
            return c_in * h_out * w_out * c_out
        if self.kind in (AVG_POOL, MAX_POOL):
            return 0
        if self.kind == BOTTLENECK:
            shortcut = 0 if self.idskip else c_in * c_out * h_out * w_out
            mid = self.mid
            return (
                c_in * mid * h_in * w_in
                + mid * mid * 9 * h_out * w_out
                + (mid * c_out * h_out * w_out + shortcut)
            )
        macs = c_in * h_in * w_in * self.mid if self.has_expand else 0
        macs += self.mid * self.kernel**2 * h_out * w_out
        if self.se:
            macs += 2 * self.mid * space.se_channels(self.mid)
        macs += self.mid * h_out * w_out * c_out
        return macs

    def activations(self) -> int:
        """Elements of one image's activations alive at once at the layer's busiest moment:
        input and output, and for an MBConv the expanded tensors between its convolutions
        (its input stays alive to the end when the block adds it back)."""
        elements = [math.prod(shape) for shape in (self.in_shape, self.out_shape)]
        if self.kind == BOTTLENECK:  # its input lives on for the shortcut
            (h_in, w_in, _), (h_out, w_out, _) = self.in_shape, self.out_shape
            inputs, outputs = elements
            mid_in, mid_out = h_in * w_in * self.mid, h_out * w_out * self.mid
            return inputs + max(mid_in, mid_in + mid_out, mid_out + 2 * outputs)
        if self.kind != MBCONV:
            return sum(elements)
        (h_in, w_in, _), (h_out, w_out, _) = self.in_shape, self.out_shape
        (inputs, outputs), mid_in, mid_out = (
            elements,
            h_in * w_in * self.mid,
            h_out * w_out * self.mid,
        )
        kept = inputs if self.idskip else 0
        stages = [mid_out + outputs + kept, mid_in + mid_out + kept]
        if self.has_expand:
            stages.append(inputs + mid_in)
        return max(stages)

    def params(self) -> int:
        """Learnable parameters (weights, biases, BN affine), as OFA's counter counts."""
        c_in, c_out = self.in_channels, self.out_channels
        if self.kind in (FIRST_CONV, STEM_CONV):
            return c_in * 9 * c_out + 2 * c_out
        if self.kind == FINAL_EXPAND:
            return c_in * c_out + 2 * c_out
        if self.kind == FEATURE_MIX:
            return c_in * c_out
        if self.kind == LOGITS:
            return c_in * c_out + c_out
        if self.kind in (AVG_POOL, MAX_POOL):
            return 0
        if self.kind == BOTTLENECK:
            shortcut = 0 if self.idskip else c_in * c_out + 2 * c_out
            mid = self.mid
            return c_in * mid + mid * mid * 9 + mid * c_out + 2 * (2 * mid + c_out) + shortcut
        params = (c_in * self.mid + 2 * self.mid) if self.has_expand else 0
        params += self.mid * self.kernel**2 + 2 * self.mid
        if self.se:
            hidden = space.se_channels(self.mid)
            params += 2 * self.mid * hidden + hidden + self.mid
        params += self.mid * c_out + 2 * c_out
        return params


def layer_plan(config: AnyConfig) -> list[LayerSpec]:
    """All layers of `config` in execution order: first conv, `blocks[0]`, the active
    elastic blocks (the tail's too), then the family's head (MobileNetV3: final expand,
    pooling, feature mix, classifier; ProxylessNAS: feature mix, pooling with classifier).
    A ResNet50 subnet's plan is `ofa.resnet.resnet_layer_plan`'s."""
    if not isinstance(config, SubnetConfig):
        from ofa.resnet import resnet_layer_plan  # which builds on this module

        return resnet_layer_plan(config)
    family = config.family_space
    widths = family.stage_widths(config.w)
    first, block0 = widths[0], widths[1]
    stage_out = widths[2 : 2 + family.n_stages + (1 if family.tail_blocks else 0)]
    layer = partial(LayerSpec, family=family.name)
    size = (config.r + 1) // 2
    plan = [layer(FIRST_CONV, (config.r, config.r, 3), (size, size, first), act=family.first_act)]
    plan.append(
        layer(
            MBCONV,
            (size, size, first),
            (size, size, block0),
            mid=first,
            kernel=3,
            stride=1,
            idskip=first == block0,
            se=False,
            act=family.block0_act,
            expand=1,
        )
    )
    channels = block0
    for block in config.active_blocks:
        stage = family.stage_of(block)
        tail = stage == family.n_stages
        first_in_stage = block % family.max_depth == 0 or tail
        stride = family.stage_strides[stage] if first_in_stage and not tail else 1
        out_size = int((size - 1) / stride + 1)
        plan.append(
            layer(
                MBCONV,
                (size, size, channels),
                (out_size, out_size, stage_out[stage]),
                mid=space.middle_channels(channels, config.e[block]),
                kernel=config.ks[block],
                stride=stride,
                idskip=not first_in_stage,
                se=not tail and family.stage_se[stage],
                act=family.stage_acts[min(stage, family.n_stages - 1)],
                has_expand=True,
                expand=config.e[block],
            )
        )
        size, channels = out_size, stage_out[stage]
    mix = widths[-1]
    if family.head == space.PROXYLESS_HEAD:
        return plan + [
            layer(FINAL_EXPAND, (size, size, channels), (size, size, mix), act=family.head_act),
            layer(LOGITS, (size, size, mix), (space.N_CLASSES,)),
        ]
    final_expand = widths[-2]
    return plan + [
        layer(FINAL_EXPAND, (size, size, channels), (size, size, final_expand), act="h_swish"),
        layer(AVG_POOL, (size, size, final_expand), (1, 1, final_expand)),
        layer(FEATURE_MIX, (1, 1, final_expand), (1, 1, mix), act="h_swish"),
        layer(LOGITS, (1, 1, mix), (space.N_CLASSES,)),
    ]


def lut_keys(config: AnyConfig) -> list[str]:
    """The LUT keys whose latencies sum to `config`'s latency under OFA's model."""
    return [layer.lut_key for layer in layer_plan(config)]


def count_macs(config: AnyConfig) -> int:
    return sum(layer.macs() for layer in layer_plan(config))


def count_params(config: AnyConfig) -> int:
    return sum(layer.params() for layer in layer_plan(config))


def space_lut_specs(
    r: int, w: float = 1.0, family: str = space.MOBILENET_V3.name
) -> list[LayerSpec]:
    """Every distinct LUT entry that some subnet of the space needs at resolution `r`:
    first conv, `blocks[0]`, for each stage its first block and its other blocks with each
    (kernel, expand ratio), each tail block likewise, and the head. 96 entries for OFA
    MobileNetV3, 103 for ProxylessNAS."""
    f = space.family_named(family)
    largest = layer_plan(SubnetConfig.largest(r=r, w=w, family=family))
    head_layers = 2 if f.head == space.PROXYLESS_HEAD else 4
    # a stage's first block, and the (identical) ones after it; then the tail blocks
    positions = [2 + stage * f.max_depth + i for stage in range(f.n_stages) for i in (0, 1)]
    positions += [2 + f.n_stages * f.max_depth + i for i in range(f.tail_blocks)]
    blocks = [
        dataclasses.replace(
            largest[position],
            kernel=kernel,
            expand=expand,
            mid=space.middle_channels(largest[position].in_channels, expand),
        )
        for position in positions
        for kernel in f.kernel_choices
        for expand in f.expand_choices
    ]
    return largest[:2] + blocks + largest[-head_layers:]
