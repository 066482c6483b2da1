"""Subnet configurations: one validated, canonical, hashable value per OFA MobileNetV3 subnet.

A config is what the fleet measures, the predictors score and the search mutates, so it is
plain data (a frozen dataclass of tuples) with exactly one parser. Two spellings of one
subnet (different values in blocks that depth skips, `"r": [224]` against `"r": 224`) give
equal configs with equal ids.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ofa import jsonfile, space

__all__ = [
    "SubnetConfig",
    "sample_configs",
    "space_size",
    "load_configs",
    "check_int",
    "check_width",
    "show",
]


def show(value: Any, limit: int = 80) -> str:
    """`repr(value)` cut to `limit` characters: error messages never echo unbounded input."""
    try:
        text = repr(value)
    except ValueError:  # an integer too long to print
        text = f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def check_int(
    field: str,
    value: Any,
    allowed: Sequence[int] | None = None,
    bounds: tuple[int, int] | None = None,
    index: int | None = None,
) -> int:
    """`value` as an int, or a ValueError naming `field[index]` and what it may be. Also
    the message of ConfigBatch, which checks whole arrays and reports their first bad entry."""
    where = f"{field}[{index}]" if index is not None else field
    if allowed is not None:
        expected = f"one of {', '.join(map(str, allowed))}"
    elif bounds is not None:
        expected = f"an integer in {bounds[0]}..{bounds[1]}"
    else:
        raise TypeError("check_int: give `allowed` or `bounds`")
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, float) and math.isfinite(value) and value.is_integer():
            value = int(value)
        else:
            raise ValueError(
                f"{where}: expected {expected}, got {show(value)} ({type(value).__name__})"
            )
    if (allowed is not None and value not in allowed) or (
        bounds is not None and not bounds[0] <= value <= bounds[1]
    ):
        raise ValueError(f"{where}: expected {expected}, got {show(value)}")
    return value


def _check_list(field: str, value: Any, length: int, allowed: Sequence[int]) -> tuple[int, ...]:
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise ValueError(
            f"{field}: expected a list of {length} integers from "
            f"{{{', '.join(map(str, allowed))}}}, got {show(value)}"
        )
    if len(value) != length:
        raise ValueError(f"{field}: expected {length} entries, got {len(value)}")
    return tuple(check_int(field, v, allowed, index=i) for i, v in enumerate(value))


def check_width(value: Any) -> float:
    """One of WIDTH_CHOICES (exactly, so equal subnets hash equal)."""
    if not isinstance(value, bool) and isinstance(value, (int, float)):
        for choice in space.WIDTH_CHOICES:
            if abs(float(value) - choice) < 1e-9:
                return choice
    raise ValueError(f"w: expected one of {space.WIDTH_CHOICES}, got {show(value)}")


@dataclass(frozen=True)
class SubnetConfig:
    """One subnet: kernel size and expand ratio per elastic block, depth per stage,
    input resolution, and the width multiplier of the supernet it belongs to.

    Construction validates and canonicalises: entries of blocks that depth skips are set
    to the smallest choice, so equal subnets compare (and hash) equal.
    """

    ks: tuple[int, ...]
    e: tuple[int, ...]
    d: tuple[int, ...]
    r: int = 224
    w: float = 1.0

    def __post_init__(self) -> None:
        d = _check_list("d", self.d, space.N_STAGES, space.DEPTH_CHOICES)
        ks = _check_list("ks", self.ks, space.N_BLOCKS, space.KERNEL_CHOICES)
        e = _check_list("e", self.e, space.N_BLOCKS, space.EXPAND_CHOICES)
        r = check_int("r", self.r, bounds=(space.MIN_RESOLUTION, space.MAX_RESOLUTION))
        w = check_width(self.w)
        active = [self._block_active(b, d) for b in range(space.N_BLOCKS)]
        ks = tuple(k if on else min(space.KERNEL_CHOICES) for k, on in zip(ks, active, strict=True))
        e = tuple(x if on else min(space.EXPAND_CHOICES) for x, on in zip(e, active, strict=True))
        for name, value in (("ks", ks), ("e", e), ("d", d), ("r", r), ("w", w)):
            object.__setattr__(self, name, value)

    @staticmethod
    def _block_active(block: int, depths: Sequence[int]) -> bool:
        return block % space.MAX_DEPTH < depths[space.stage_of(block)]

    # ------------------------------------------------------------------ views
    def is_active(self, block: int) -> bool:
        """Whether elastic block `block` (0..19) runs in this subnet."""
        return self._block_active(block, self.d)

    @property
    def active_blocks(self) -> list[int]:
        """Indices (0..19) of the elastic blocks that run, in order."""
        return [b for b in range(space.N_BLOCKS) if self.is_active(b)]

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict in OFA's spelling plus our `w` (e.g. for `set_active_subnet`)."""
        return {"ks": list(self.ks), "e": list(self.e), "d": list(self.d), "r": self.r, "w": self.w}

    def to_json(self) -> str:
        """Canonical JSON: sorted keys, no spaces. Equal subnets give equal strings."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    @property
    def id(self) -> str:
        """A stable 12-hex-digit id of the canonical form."""
        return hashlib.sha256(self.to_json().encode()).hexdigest()[:12]

    def replace(self, **changes: Any) -> SubnetConfig:
        """A copy with some fields changed (validated again)."""
        fields = self.to_dict()
        fields.update(changes)
        return SubnetConfig(**fields)

    # ---------------------------------------------------------------- parsing
    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, w: float | None = None) -> SubnetConfig:
        """Parse our JSON or OFA's (`"r": [224]`, `"image_size"`, `"width_mult"`).

        `w` is used when the data does not name a width; the default width is 1.0.
        Unknown keys are refused so that a typo cannot silently fall back to a default.
        """
        if not isinstance(data, Mapping):
            raise ValueError(f"config: expected a JSON object, got {type(data).__name__}")
        if "blocks" in data:
            return cls.from_net_config(data)
        known = {"ks", "e", "d", "r", "image_size", "w", "width_mult"}
        unknown = [key for key in data if key not in known]
        if unknown:
            more = f" and {len(unknown) - 3} more" if len(unknown) > 3 else ""
            raise ValueError(
                f"config: unknown field(s) {', '.join(map(show, unknown[:3]))}"
                f"{more}; expected {', '.join(sorted(known))}"
            )
        for name in ("ks", "e", "d"):
            if name not in data:
                raise ValueError(f"{name}: missing (a subnet needs ks, e, d and r)")
        if "r" in data and "image_size" in data:
            raise ValueError("r: given twice (as 'r' and 'image_size')")
        r = data.get("r", data.get("image_size"))
        if r is None:
            raise ValueError("r: missing (the input resolution, e.g. 224)")
        if isinstance(r, Sequence) and not isinstance(r, (str, bytes)):
            if len(r) != 1:
                raise ValueError(f"r: expected one resolution, got {show(list(r))}")
            r = r[0]
        width = data.get("w", data.get("width_mult", 1.0 if w is None else w))
        return cls(ks=data["ks"], e=data["e"], d=data["d"], r=r, w=width)

    @classmethod
    def from_json(cls, text: str, *, w: float | None = None) -> SubnetConfig:
        return cls.from_dict(jsonfile.parse(text, "config"), w=w)

    @classmethod
    def from_net_config(cls, net: Mapping[str, Any], image_size: int | None = None) -> SubnetConfig:
        """Read an OFA `net.config` (a built MobileNetV3, old or new block naming)."""
        if not isinstance(net, Mapping):
            raise ValueError(f"net.config: expected a JSON object, got {type(net).__name__}")
        name = net.get("name")
        if name != "MobileNetV3":
            raise ValueError(
                f"net.config: name is {show(name)}; only OFA MobileNetV3 subnets "
                "are in this space (ProxylessNAS nets are not)"
            )
        first_conv, raw = net.get("first_conv"), net.get("blocks")
        if not isinstance(first_conv, Mapping) or "out_channels" not in first_conv:
            raise ValueError("net.config: first_conv.out_channels: missing")
        if not isinstance(raw, list) or not all(isinstance(b, Mapping) for b in raw):
            raise ValueError("net.config: blocks: expected a list of block objects")
        blocks = [b.get("conv") or b.get("mobile_inverted_conv") for b in raw]
        for i, block in enumerate(blocks):
            if not isinstance(block, Mapping):
                raise ValueError(
                    f"net.config: blocks[{i}]: expected a 'conv' (or 'mobile_inverted_conv') object"
                )
        shortcuts = [b.get("shortcut") for b in raw]
        first_out = first_conv["out_channels"]
        width = next(
            (w for w in space.WIDTH_CHOICES if space.stage_widths(w)[0] == first_out), None
        )
        if width is None:
            raise ValueError(
                f"net.config: first_conv.out_channels is {show(first_out)}; expected "
                f"{space.stage_widths(1.0)[0]} (w1.0) or {space.stage_widths(1.2)[0]} (w1.2)"
            )
        stages: list[list[Mapping[str, Any]]] = []
        for block, shortcut in zip(blocks[1:], shortcuts[1:], strict=True):
            if shortcut is None:
                stages.append([])
            if not stages:
                raise ValueError("net.config: blocks[1] must start a stage (no shortcut)")
            stages[-1].append(block)
        if len(stages) != space.N_STAGES:
            raise ValueError(
                f"net.config: expected {space.N_STAGES} stages after blocks[0], found {len(stages)}"
            )
        widths = space.stage_widths(width)[2:7]
        ks: list[Any] = []  # as the file has them; the constructor checks them
        e: list[Any] = []
        d: list[int] = []
        for s, stage in enumerate(stages):
            if not 1 <= len(stage) <= space.MAX_DEPTH:
                raise ValueError(
                    f"net.config: stage {s} has {len(stage)} blocks, expected "
                    f"{min(space.DEPTH_CHOICES)}..{space.MAX_DEPTH}"
                )
            for i, block in enumerate(stage):
                if block.get("out_channels") != widths[s]:
                    raise ValueError(
                        f"net.config: stage {s} block {i} has out_channels "
                        f"{show(block.get('out_channels'))}, expected {widths[s]} "
                        f"for w{width}"
                    )
            d.append(len(stage))
            pad = space.MAX_DEPTH - len(stage)
            ks += [b.get("kernel_size") for b in stage] + [min(space.KERNEL_CHOICES)] * pad
            e += [b.get("expand_ratio") for b in stage] + [min(space.EXPAND_CHOICES)] * pad
        if image_size is None:
            image_size = net.get("image_size")
        if image_size is None:
            raise ValueError("r: net.config has no image size; pass it (run.config's image_size)")
        return cls(ks=tuple(ks), e=tuple(e), d=tuple(d), r=image_size, w=width)

    @classmethod
    def from_file(cls, path: str | Path) -> SubnetConfig:
        """Read one config from a JSON file; for an OFA `net.config`, the image size comes
        from the `run.config` beside it when present."""
        path = Path(path)
        data = jsonfile.read(path)
        net_config = isinstance(data, Mapping) and "blocks" in data
        size = _image_size_beside(path) if net_config else None
        try:
            return cls.from_net_config(data, image_size=size) if net_config else cls.from_dict(data)
        except ValueError as exc:
            raise ValueError(f"{path}: {exc}") from None

    # ---------------------------------------------------------------- special
    @classmethod
    def largest(cls, r: int = 224, w: float = 1.0) -> SubnetConfig:
        return cls(
            ks=(max(space.KERNEL_CHOICES),) * space.N_BLOCKS,
            e=(max(space.EXPAND_CHOICES),) * space.N_BLOCKS,
            d=(max(space.DEPTH_CHOICES),) * space.N_STAGES,
            r=r,
            w=w,
        )

    @classmethod
    def smallest(cls, r: int = 224, w: float = 1.0) -> SubnetConfig:
        return cls(
            ks=(min(space.KERNEL_CHOICES),) * space.N_BLOCKS,
            e=(min(space.EXPAND_CHOICES),) * space.N_BLOCKS,
            d=(min(space.DEPTH_CHOICES),) * space.N_STAGES,
            r=r,
            w=w,
        )

    @classmethod
    def sample(
        cls, rng: random.Random, resolutions: Sequence[int] = (224,), w: float = 1.0
    ) -> SubnetConfig:
        """Uniform per choice, like OFA's `sample_active_subnet`."""
        return cls(
            ks=tuple(rng.choice(space.KERNEL_CHOICES) for _ in range(space.N_BLOCKS)),
            e=tuple(rng.choice(space.EXPAND_CHOICES) for _ in range(space.N_BLOCKS)),
            d=tuple(rng.choice(space.DEPTH_CHOICES) for _ in range(space.N_STAGES)),
            r=rng.choice(list(resolutions)),
            w=w,
        )


def _image_size_beside(net_config: Path) -> Any:
    """`image_size` of the `run.config` beside a published `net.config`, if there is one."""
    run_config = net_config.with_name("run.config")
    if not run_config.exists():
        return None
    run = jsonfile.read(run_config)
    if not isinstance(run, Mapping):
        raise ValueError(f"{run_config}: expected a JSON object, got {type(run).__name__}")
    return run.get("image_size")


def sample_configs(
    n: int, seed: int, resolutions: Sequence[int] = (224,), w: float = 1.0
) -> list[SubnetConfig]:
    """`n` configs drawn with their own RNG (same seed, same list; the global RNG is untouched)."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"n: expected a non-negative integer, got {show(n)}")
    rng = random.Random(seed)
    return [SubnetConfig.sample(rng, resolutions, w) for _ in range(n)]


def space_size(n_resolutions: int = 1) -> int:
    """Number of distinct subnets (canonical forms) times the number of resolutions."""
    per_block = len(space.KERNEL_CHOICES) * len(space.EXPAND_CHOICES)
    per_stage = sum(per_block**depth for depth in space.DEPTH_CHOICES)
    return per_stage**space.N_STAGES * n_resolutions


def load_configs(path: str | Path) -> list[SubnetConfig]:
    """Configs from a JSON file (one object or a list) or a JSONL file (one per line)."""
    path = Path(path)
    text = jsonfile.read_text(path)
    try:
        data = jsonfile.parse(text, str(path))
    except ValueError:  # not one JSON value: JSON lines, each named by its number if bad
        items: Iterable[Any] = [
            jsonfile.parse(line, f"{path}:{lineno}")
            for lineno, line in enumerate(text.splitlines(), 1)
            if line.strip()
        ]
    else:
        if isinstance(data, Mapping) and "blocks" in data:
            return [SubnetConfig.from_file(path)]
        items = data if isinstance(data, list) else [data]
    configs = []
    for i, item in enumerate(items):
        try:
            configs.append(SubnetConfig.from_dict(item))
        except ValueError as exc:
            raise ValueError(f"{path}: entry {i}: {exc}") from None
    return configs
