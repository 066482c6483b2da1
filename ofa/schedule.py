"""Progressive-shrinking schedules as plain data: one JSON file per phase, one chain file.

A phase file is one JSON object (see `Phase` for every field and its default), e.g. OFA's
elastic-kernel phase:

    {"name": "kernel", "epochs": 125, "warmup_epochs": 5, "batch_size": 64, "lr": 0.03,
     "kd_ratio": 1.0, "subnets_per_step": 1, "ks": [3, 5, 7], "e": [6], "d": [4],
     "resolutions": [128, 132, ..., 224]}

Length is `steps` or `epochs` (one of them; warm-up likewise, and included in the length).
A chain file lists phase files in order, relative to itself, and names the phase whose result
teaches the later ones: `{"phases": ["full.json", "kernel.json", ...], "teacher": "full"}`.
Bad files are refused with the file and the field.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from ofa import jsonfile, resnet, space
from ofa.config import check_int, show

__all__ = ["Phase", "Chain", "load_phase", "load_chain", "learning_rate"]

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_FILE_NAME = re.compile(r"[^\x00-\x1f\x7f]{1,255}")
MAX_EPOCHS = 10**6  # far beyond any schedule; keeps epochs x images a finite step count


@dataclass(frozen=True)
class Phase:
    """One phase of progressive shrinking.

    `batch_size` and `lr` are per process: with N processes the global batch is N x
    batch_size and the peak learning rate N x lr (OFA's convention). Each step samples one
    resolution and `subnets_per_step` subnets (kernel sizes from `ks`, expand ratios from `e`,
    depths from `d`), accumulates their gradients and takes one SGD step. The loss per subnet
    is label-smoothed cross-entropy plus `kd_ratio` x cross-entropy against the teacher's
    softmax. `sort_channels` re-sorts each block's middle channels by importance before the
    first step, keeping the channel sets of the phase's expand ratios except the smallest
    (which is the one being added). At the end, the largest and smallest subnets of the phase
    and `eval_subnets` random ones are evaluated at `eval_resolution` (default: the largest),
    each after recomputing its BN statistics on `eval_calibration_images` training images.
    """

    name: str
    batch_size: int
    lr: float
    steps: int | None = None
    epochs: float | None = None
    warmup_steps: int | None = None
    warmup_epochs: float | None = None
    warmup_lr: float = 0.0
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 3e-5
    label_smoothing: float = 0.1
    dropout: float = 0.1
    kd_ratio: float = 0.0
    subnets_per_step: int = 1
    ks: tuple[int, ...] | None = None  # None: the family's largest choice
    e: tuple[float, ...] | None = None
    d: tuple[int, ...] | None = None
    w: tuple[int, ...] | None = None
    resolutions: tuple[int, ...] = (224,)
    sort_channels: bool = False
    seed: int = 0
    log_every: int = 20
    checkpoint_every: int = 500
    eval_subnets: int = 2
    eval_resolution: int | None = None
    eval_calibration_images: int = 2000
    family: str = space.MOBILENET_V3.name  # of the supernet trained: the loader's, not the file's

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME.fullmatch(self.name):
            raise ValueError(
                f"name: expected 1-64 characters of A-Z a-z 0-9 . _ - (it names "
                f"the phase's folder), got {show(self.name)}"
            )
        for name in ("batch_size", "subnets_per_step", "log_every", "checkpoint_every"):
            _integer(name, getattr(self, name), minimum=1)
        _integer("seed", self.seed, minimum=0)
        _integer("eval_subnets", self.eval_subnets, minimum=0)
        _integer("eval_calibration_images", self.eval_calibration_images, minimum=1)
        for name in ("lr", "warmup_lr", "momentum", "weight_decay", "kd_ratio"):
            _number(name, getattr(self, name))
        _number("label_smoothing", self.label_smoothing, maximum=1.0)
        _number("dropout", self.dropout, maximum=1.0)
        if not isinstance(self.nesterov, bool) or not isinstance(self.sort_channels, bool):
            bad = "nesterov" if not isinstance(self.nesterov, bool) else "sort_channels"
            raise ValueError(f"{bad}: expected true or false, got {show(getattr(self, bad))}")
        self._one_of("steps", "epochs", required=True)
        self._one_of("warmup_steps", "warmup_epochs", required=False)
        if self.family != resnet.FAMILY and self.family not in space.FAMILIES:
            families = ", ".join([*space.FAMILIES, resnet.FAMILY])
            raise ValueError(f"family: expected one of {families}, got {show(self.family)}")
        choices = choice_fields(self.family)
        for name in ("ks", "e", "d", "w"):
            value = getattr(self, name)
            if name not in choices:
                if value is not None:
                    raise ValueError(
                        f"{name}: {_title(self.family)} phases choose {', '.join(choices)} only"
                    )
                continue
            allowed = choices[name]
            default = (max(allowed),)
            object.__setattr__(
                self, name, _choices(name, default if value is None else value, allowed)
            )
        if self.sort_channels and self.family == resnet.FAMILY:
            raise ValueError(
                "sort_channels: re-sorting channels is built for MobileNetV3 and ProxylessNAS "
                "only (OFA-ResNet50's bottlenecks are not yet)"
            )
        sizes = _choices("resolutions", self.resolutions, None)
        for size in sizes:
            if not space.MIN_RESOLUTION <= size <= space.MAX_RESOLUTION:
                raise ValueError(
                    f"resolutions: {size} is outside {space.MIN_RESOLUTION}..{space.MAX_RESOLUTION}"
                )
        object.__setattr__(self, "resolutions", sizes)
        if self.eval_resolution is not None:
            check_int(
                "eval_resolution",
                self.eval_resolution,
                bounds=(space.MIN_RESOLUTION, space.MAX_RESOLUTION),
            )

    def _one_of(self, steps: str, epochs: str, required: bool) -> None:
        given = [n for n in (steps, epochs) if getattr(self, n) is not None]
        if len(given) == 2 or (required and not given):
            raise ValueError(f"{steps}: give exactly one of '{steps}' and '{epochs}'")
        if getattr(self, steps) is not None:
            _integer(steps, getattr(self, steps), minimum=0 if steps.startswith("warmup") else 1)
        if getattr(self, epochs) is not None:
            _number(epochs, getattr(self, epochs), maximum=MAX_EPOCHS)

    def total_steps(self, n_images: int, world: int = 1) -> tuple[int, int]:
        """(steps, warm-up steps) for a training set of `n_images` and `world` processes."""
        per_epoch = n_images / (self.batch_size * world)
        if self.steps is not None:
            steps = self.steps
        else:
            assert self.epochs is not None  # construction requires one of steps and epochs
            steps = max(1, math.ceil(self.epochs * per_epoch))
        if self.warmup_steps is not None:
            warmup = self.warmup_steps
        else:
            warmup = math.ceil((self.warmup_epochs or 0.0) * per_epoch)
        if warmup >= steps:
            raise ValueError(
                f"warmup_steps: {warmup} warm-up steps leave none of the {steps} "
                f"steps of phase {self.name!r} for the cosine schedule"
            )
        return steps, warmup

    @property
    def kept_expand_ratios(self) -> tuple[int, ...]:
        """Expand ratios whose channel sets `sort_channels` keeps (all but the smallest):
        MobileNetV3's and ProxylessNAS's, integers."""
        assert self.e is not None  # construction fills every choice of the family
        return tuple(int(e) for e in self.e[1:])

    @property
    def eval_size(self) -> int:
        return self.eval_resolution or max(self.resolutions)

    def to_dict(self) -> dict[str, Any]:
        """The fields as a phase file holds them: no `family` (the loader's; a checkpoint
        records its supernet beside), no `w` unless ResNet50's, so an MBConv phase's dict is
        what checkpoints recorded before other families were trained."""
        data = asdict(self)
        del data["family"]
        if data["w"] is None:
            del data["w"]
        return {k: list(v) if isinstance(v, tuple) else v for k, v in data.items()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], family: str = space.MOBILENET_V3.name) -> Phase:
        """A phase file's object, for a supernet of `family`."""
        if not isinstance(data, Mapping):
            raise ValueError(f"phase: expected a JSON object, got {type(data).__name__}")
        known = {f.name for f in fields(cls)} - {"family"}
        unknown = sorted(str(key) for key in set(data) - known)
        if unknown:
            raise ValueError(
                f"{_key(unknown[0])}: unknown field; expected one of {', '.join(sorted(known))}"
            )
        for name in ("name", "batch_size", "lr"):
            if name not in data:
                raise ValueError(f"{name}: missing")
        return cls(**data, family=family)


def choice_fields(family: str) -> dict[str, tuple[float, ...]]:
    """The elastic dimensions a phase of `family` samples, with their choices: kernel,
    expand ratio and depth for MobileNetV3 and ProxylessNAS; depth (blocks beyond each
    stage's base), expand ratio and width-multiplier index for OFA-ResNet50."""
    if family == resnet.FAMILY:
        return {
            "d": resnet.DEPTH_CHOICES,
            "e": resnet.EXPAND_CHOICES,
            "w": tuple(range(len(resnet.WIDTH_MULTS))),
        }
    f = space.family_named(family)
    return {"ks": f.kernel_choices, "e": f.expand_choices, "d": f.depth_choices}


def _title(family: str) -> str:
    return "OFA-ResNet50" if family == resnet.FAMILY else space.FAMILIES[family].title


def _key(key: str) -> str:
    """A field name from a user's file as it can be shown: quoted and cut if it is odd."""
    return key if key.isidentifier() else show(key)


def _integer(name: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name}: expected an integer >= {minimum}, got {show(value)}")


def _number(name: str, value: Any, maximum: float | None = None) -> None:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not 0 <= value < math.inf
        or (maximum is not None and value > maximum)
    ):
        bound = f"in 0..{maximum}" if maximum is not None else ">= 0"
        raise ValueError(f"{name}: expected a number {bound}, got {show(value)}")


def _choices(name: str, value: Any, allowed: tuple[Any, ...] | None) -> tuple[Any, ...]:
    """`value` as the sorted distinct entries of a non-empty list, each in `allowed` (any
    integer when None; ResNet50's expand ratios are the only fractions)."""
    kind = "integers" if allowed is None or all(isinstance(a, int) for a in allowed) else "numbers"
    if isinstance(value, (str, bytes, Mapping)) or not hasattr(value, "__iter__"):
        raise ValueError(f"{name}: expected a non-empty list of {kind}, got {show(value)}")
    values = tuple(value)
    if not values:
        raise ValueError(f"{name}: expected a non-empty list of {kind}, got []")
    for i, v in enumerate(values):
        number = isinstance(v, int) or (kind == "numbers" and isinstance(v, float))
        if isinstance(v, bool) or not number or (allowed and v not in allowed):
            expected = f"one of {', '.join(map(str, allowed))}" if allowed else "an integer"
            raise ValueError(f"{name}[{i}]: expected {expected}, got {show(v)}")
    return tuple(sorted(set(values)))


def load_phase(path: str | Path, family: str = space.MOBILENET_V3.name) -> Phase:
    """A phase file, for a supernet of `family`."""
    path = Path(path)
    data = jsonfile.read(path)
    try:
        return Phase.from_dict(data, family)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{path}: {exc}") from None


@dataclass(frozen=True)
class Chain:
    phases: tuple[Phase, ...]
    teacher: str | None


def load_chain(path: str | Path, family: str = space.MOBILENET_V3.name) -> Chain:
    """A chain file: its phase files (relative to it) in order, and the teacher phase; for
    a supernet of `family`."""
    path = Path(path)
    data = jsonfile.read(path)
    if not isinstance(data, Mapping):
        raise ValueError(f"{path}: expected a JSON object with 'phases' and 'teacher'")
    if "phases" not in data:
        raise ValueError(
            f"{path}: phases: missing (a phase file runs with `train run`, a "
            f"chain file lists phase files)"
        )
    unknown = sorted(str(key) for key in set(data) - {"phases", "teacher"})
    if unknown:
        raise ValueError(f"{path}: {_key(unknown[0])}: unknown field; expected 'phases', 'teacher'")
    files = data.get("phases")
    if not isinstance(files, list) or not files:
        raise ValueError(f"{path}: phases: expected a non-empty list of phase file names")
    for i, name in enumerate(files):
        if not isinstance(name, str) or not _FILE_NAME.fullmatch(name) or Path(name).is_absolute():
            raise ValueError(
                f"{path}: phases[{i}]: expected a phase file name relative to the "
                f"chain file (1-255 printable characters), got {show(name)}"
            )
    phases = tuple(load_phase(path.parent / f, family) for f in files)
    names = [p.name for p in phases]
    if len(set(names)) != len(names):
        raise ValueError(f"{path}: phases: two phases share a name ({', '.join(names)})")
    teacher = data.get("teacher")
    if teacher is not None and teacher not in names:
        raise ValueError(
            f"{path}: teacher: {teacher!r} is not one of the phases ({', '.join(names)})"
        )
    for i, phase in enumerate(phases):
        if phase.kd_ratio > 0 and (teacher is None or teacher not in names[:i]):
            raise ValueError(
                f"{path}: teacher: phase {phase.name!r} distils (kd_ratio "
                f"{phase.kd_ratio}) but no earlier phase is the teacher"
            )
    return Chain(phases, teacher)


def learning_rate(phase: Phase, step: int, steps: int, warmup: int, scale: float = 1.0) -> float:
    """OFA's schedule: linear warm-up from `warmup_lr` to `lr` over `warmup` steps, then a
    cosine from `lr` to 0 over the rest; `scale` multiplies `lr` (the process count)."""
    peak = phase.lr * scale
    if step < warmup:
        return phase.warmup_lr + (peak - phase.warmup_lr) * (step + 1) / warmup
    return 0.5 * peak * (1 + math.cos(math.pi * (step - warmup) / (steps - warmup)))
