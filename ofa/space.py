"""The OFA MobileNetV3 design space as plain data (no torch).

Every number here is fixed by the published supernet `ofa_mbv3_d234_e346_k357_w{1.0,1.2}`;
the supernet, the config validator, the arithmetic counters and the LUT keys all read them
from this one place so they cannot disagree.
"""

from __future__ import annotations

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


def make_divisible(value: float, divisor: int = CHANNEL_DIVISOR) -> int:
    """Round `value` to a multiple of `divisor`, never more than 10% down (TF MobileNet rule)."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


def stage_widths(width_mult: float) -> tuple[int, ...]:
    """The nine channel counts of `BASE_WIDTHS` scaled by `width_mult`."""
    return tuple(make_divisible(w * width_mult) for w in BASE_WIDTHS)


def middle_channels(in_channels: int, expand_ratio: int) -> int:
    """Channels inside an MBConv block: OFA's `make_divisible(round(in * e), 8)`."""
    return make_divisible(round(in_channels * expand_ratio))


def se_channels(channels: int) -> int:
    """Hidden width of a squeeze-excite module over `channels` channels."""
    return make_divisible(channels // SE_REDUCTION)


def stage_of(block: int) -> int:
    """Stage index (0..4) of elastic block `block` (0..19)."""
    return block // MAX_DEPTH
