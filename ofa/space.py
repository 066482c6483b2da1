"""The OFA design spaces as plain data (no torch): one `Family` per elastic supernet.

Every number here is fixed by a published supernet: `ofa_mbv3_d234_e346_k357_w{1.0,1.2}`
(MobileNetV3) and `ofa_proxyless_d234_e346_k357_w1.3` (ProxylessNAS). The supernets, the
config validator, the arithmetic counters and the LUT keys all read them from here so they
cannot disagree. The module-level constants are MobileNetV3's (the default family); the
choices, stage count and depth they name are ProxylessNAS's too, so code that depends on
those only (the search's moves) serves both; `FAMILIES` holds every family.
"""

from __future__ import annotations

from dataclasses import dataclass

KERNEL_CHOICES = (3, 5, 7)
EXPAND_CHOICES = (3, 4, 6)
DEPTH_CHOICES = (2, 3, 4)
WIDTH_CHOICES = (1.0, 1.2)

N_STAGES = 5
MAX_DEPTH = max(DEPTH_CHOICES)
N_BLOCKS = N_STAGES * MAX_DEPTH  # elastic blocks, `blocks[1..20]`

# Inclusive bounds on the input resolution. OFA trains on 128..224 and its published
# specialised nets use up to 260; 32 is the smallest size that survives five stride-2 stages.
MIN_RESOLUTION = 32
MAX_RESOLUTION = 1024
TRAIN_RESOLUTIONS = tuple(range(128, 225, 4))

# Per elastic stage (blocks[1..20] in groups of four).
STAGE_STRIDES = (2, 2, 2, 1, 2)
STAGE_ACTS = ("relu", "relu", "h_swish", "h_swish", "h_swish")
STAGE_SE = (False, True, False, True, True)

# first conv | blocks[0] | five stages | final expand | feature mix, before width scaling.
BASE_WIDTHS = (16, 16, 24, 40, 80, 112, 160, 960, 1280)

N_CLASSES = 1000
SE_REDUCTION = 4
CHANNEL_DIVISOR = 8
BN_MOMENTUM = 0.1
BN_EPS = 1e-5

# The two ways the published supernets end (`Family.head`).
MBV3_HEAD = "mbv3"  # final expand 1x1 conv, pooling, feature-mix 1x1 conv (no BN), linear
PROXYLESS_HEAD = "proxyless"  # feature-mix 1x1 conv (BN), pooling, linear


@dataclass(frozen=True)
class Family:
    """One elastic MBConv supernet family: a first conv, a fixed `blocks[0]`, `n_stages`
    elastic stages of up to `max_depth` blocks, then `tail_blocks` blocks of their own stage
    that always run (elastic kernel and expand ratio only), and a head.

    `base_widths`: first conv | blocks[0] | each elastic stage | the tail stage, if any |
    the head's one or two 1x1 convolutions, before width scaling."""

    name: str  # the `family` of a config
    title: str
    supernet_prefix: str  # the published supernets' names, before `_w<width>`
    net_config_name: str  # `name` in a published net.config
    width_choices: tuple[float, ...]
    base_widths: tuple[int, ...]
    stage_strides: tuple[int, ...]
    stage_acts: tuple[str, ...]
    stage_se: tuple[bool, ...]
    first_act: str
    block0_act: str
    head: str
    head_act: str
    bn_eps: float
    tail_blocks: int = 0
    kernel_choices: tuple[int, ...] = KERNEL_CHOICES
    expand_choices: tuple[int, ...] = EXPAND_CHOICES
    depth_choices: tuple[int, ...] = DEPTH_CHOICES

    @property
    def n_stages(self) -> int:
        """Stages of elastic depth."""
        return len(self.stage_strides)

    @property
    def max_depth(self) -> int:
        return max(self.depth_choices)

    @property
    def n_blocks(self) -> int:
        """Blocks of elastic kernel and expand ratio: the elastic stages', then the tail's."""
        return self.n_stages * self.max_depth + self.tail_blocks

    def stage_widths(self, width_mult: float) -> tuple[int, ...]:
        """`base_widths` scaled by `width_mult`."""
        return tuple(make_divisible(w * width_mult) for w in self.base_widths)

    def supernet(self, width_mult: float) -> str:
        """The supernet's name, as OFA's model zoo spells it."""
        return f"{self.supernet_prefix}_w{width_mult}"

    def stage_of(self, block: int) -> int:
        """Stage index of block `block`; the tail blocks are stage `n_stages`."""
        return min(block // self.max_depth, self.n_stages)


MOBILENET_V3 = Family(
    name="mbv3",
    title="MobileNetV3",
    supernet_prefix="ofa_mbv3_d234_e346_k357",
    net_config_name="MobileNetV3",
    width_choices=WIDTH_CHOICES,
    base_widths=BASE_WIDTHS,
    stage_strides=STAGE_STRIDES,
    stage_acts=STAGE_ACTS,
    stage_se=STAGE_SE,
    first_act="h_swish",
    block0_act="relu",
    head=MBV3_HEAD,
    head_act="h_swish",
    bn_eps=BN_EPS,
)

# ProxylessNAS (`OFAProxylessNASNets`): ReLU6 everywhere, no squeeze-excite, a sixth stage
# of one stride-1 block (320 channels before width scaling), BN eps 1e-3.
PROXYLESS = Family(
    name="proxyless",
    title="ProxylessNAS",
    supernet_prefix="ofa_proxyless_d234_e346_k357",
    net_config_name="ProxylessNASNets",
    width_choices=(1.3,),
    base_widths=(32, 16, 24, 40, 80, 96, 192, 320, 1280),
    stage_strides=(2, 2, 2, 1, 2),
    stage_acts=("relu6",) * 5,
    stage_se=(False,) * 5,
    first_act="relu6",
    block0_act="relu6",
    head=PROXYLESS_HEAD,
    head_act="relu6",
    bn_eps=1e-3,
    tail_blocks=1,
)

FAMILIES = {family.name: family for family in (MOBILENET_V3, PROXYLESS)}


def supernets_by_first_conv() -> dict[int, tuple[Family, float]]:
    """Each MBConv supernet (family, width) by its first conv's output channels (16, 24, 40):
    distinct, so a checkpoint or a LUT that names no supernet can be recognised by them."""
    return {
        family.stage_widths(w)[0]: (family, w)
        for family in FAMILIES.values()
        for w in family.width_choices
    }


def family_named(name: object) -> Family:
    """The family called `name`, or a ValueError listing them."""
    if isinstance(name, str) and name in FAMILIES:
        return FAMILIES[name]
    shown = repr(name) if len(repr(name)) <= 40 else repr(name)[:37] + "..."
    raise ValueError(f"family: expected one of {', '.join(FAMILIES)}, got {shown}")


def make_divisible(value: float, divisor: int = CHANNEL_DIVISOR) -> int:
    """Round `value` to a multiple of `divisor`, never more than 10% down (TF MobileNet rule)."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


def stage_widths(width_mult: float) -> tuple[int, ...]:
    """The nine channel counts of MobileNetV3's `BASE_WIDTHS` scaled by `width_mult`."""
    return MOBILENET_V3.stage_widths(width_mult)


def middle_channels(in_channels: int, expand_ratio: int) -> int:
    """Channels inside an MBConv block: OFA's `make_divisible(round(in * e), 8)`."""
    return make_divisible(round(in_channels * expand_ratio))


def se_channels(channels: int) -> int:
    """Hidden width of a squeeze-excite module over `channels` channels."""
    return make_divisible(channels // SE_REDUCTION)


def stage_of(block: int) -> int:
    """Stage index (0..4) of elastic block `block` (0..19)."""
    return block // MAX_DEPTH
