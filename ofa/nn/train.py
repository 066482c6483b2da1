"""Progressive-shrinking training of the OFA supernet: one phase at a time, or a chain.

A phase (see `ofa.schedule.Phase`) runs SGD steps; each step draws one resolution and the
phase's number of subnets from a random generator seeded by (seed, step), takes the global
batch of that step (`ofa.nn.data.step_indices`), distils the teacher (the full network, BN on
batch statistics and no dropout, as OFA), accumulates the subnets' gradients, averages them
over processes and takes one SGD step. Everything random is a function of the step, so a
checkpoint needs only the weights, the optimizer state and the step to resume bit for bit.

Distributed: start with `torchrun --nproc_per_node N`. Each process computes its share of
the batch for every sampled subnet; one all-reduce per step averages the accumulated
gradients (and the BN running statistics), so every rank holds the same weights. This is
DistributedDataParallel's arithmetic done once per step rather than per backward, which
accumulation over subnets needs anyway, and it needs no unused-parameter bookkeeping for the
blocks a subnet skips. gloo on CPU, NCCL on GPU.

Checkpoints are `{"state_dict": ..., "optimizer": ..., "step": ..., "phase": ...}`: the
official layout (the reference package loads `state_dict` unchanged) with our extras, all
loadable with `torch.load(weights_only=True)`.
"""

from __future__ import annotations

import json
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import distributed as dist
from torch import nn
from torch.nn import functional as F

from ofa import resnet, space
from ofa.config import SubnetConfig
from ofa.nn.accuracy_dataset import subnet_accuracy
from ofa.nn.channel_sort import sort_channels
from ofa.nn.checkpoint import load_checkpoint, load_supernet
from ofa.nn.data import Splits, fixed_indices, place, step_indices
from ofa.nn.resnet_supernet import OFAResNet50
from ofa.nn.supernet import ElasticSupernet, build_supernet
from ofa.plan import AnyConfig
from ofa.resnet import ResNetConfig
from ofa.schedule import Chain, Phase, learning_rate

Supernet = ElasticSupernet | OFAResNet50

__all__ = [
    "Processes",
    "train_phase",
    "train_chain",
    "train_step",
    "sample_subnet",
    "phase_subnets",
    "make_optimizer",
    "teacher_network",
    "CHECKPOINT",
    "EVALUATION",
    "DEFAULT_SUPERNET",
]

CHECKPOINT = "checkpoint.pt"
EVALUATION = "eval.json"
DEFAULT_SUPERNET = space.MOBILENET_V3.supernet(1.0)


@dataclass(frozen=True)
class Processes:
    """This process's place in a (possibly single-process) run."""

    rank: int = 0
    world: int = 1
    device: torch.device = torch.device("cpu")

    @classmethod
    def from_env(cls) -> Processes:
        """Join the process group torchrun describes in the environment, if any."""
        world = int(os.environ.get("WORLD_SIZE", "1"))
        cuda = torch.cuda.is_available()
        local = int(os.environ.get("LOCAL_RANK", "0"))
        device = torch.device(f"cuda:{local}") if cuda else torch.device("cpu")
        if world == 1:
            return cls(device=device)
        if cuda:
            torch.cuda.set_device(device)
        if not dist.is_initialized():
            dist.init_process_group("nccl" if cuda else "gloo")
        return cls(dist.get_rank(), world, device)

    def __enter__(self) -> Processes:
        return self

    def __exit__(self, *exc_info) -> None:
        """Leave the process group (torch warns at exit about one left open)."""
        if self.world > 1 and dist.is_initialized():
            dist.destroy_process_group()

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()

    def average(self, tensors: list[torch.Tensor]) -> None:
        """Replace each tensor by its mean over processes (one flat all-reduce)."""
        if self.world == 1 or not tensors:
            return
        flat = torch.cat([t.reshape(-1) for t in tensors])
        dist.all_reduce(flat)
        flat /= self.world
        offset = 0
        for t in tensors:
            t.copy_(flat[offset : offset + t.numel()].view_as(t))
            offset += t.numel()


Choose = Callable[[tuple[Any, ...]], Any]


def _subnet(phase: Phase, choose: Choose, resolution: int, width: float) -> AnyConfig:
    """A subnet of the phase's family with each choice `choose(phase's choices)`, drawn
    in a fixed order (kernels, expand ratios, depths; ResNet50: depths, expand ratios,
    widths). ResNet50's stem is kept when the phase's depths include one above 0 and skipped
    when they include 0 (OFA draws it from the largest and smallest depth)."""
    assert phase.e is not None and phase.d is not None  # the phase filled its family's choices
    if phase.family == resnet.FAMILY:
        assert phase.w is not None
        stem = tuple(
            sorted(
                {
                    0 if x == 0 else max(resnet.STEM_DEPTH_CHOICES)
                    for x in (min(phase.d), max(phase.d))
                }
            )
        )
        return ResNetConfig(
            d=(choose(stem),) + tuple(choose(phase.d) for _ in resnet.BASE_DEPTHS),
            e=tuple(choose(phase.e) for _ in range(resnet.N_BLOCKS)),
            w=tuple(choose(phase.w) for _ in range(resnet.N_WIDTHS)),
            r=resolution,
        )
    assert phase.ks is not None
    family = space.FAMILIES[phase.family]
    return SubnetConfig(
        ks=tuple(choose(phase.ks) for _ in range(family.n_blocks)),
        e=tuple(choose(phase.e) for _ in range(family.n_blocks)),
        d=tuple(choose(phase.d) for _ in range(family.n_stages)),
        r=resolution,
        w=width,
        family=family.name,
    )


def sample_subnet(rng: random.Random, phase: Phase, resolution: int, width: float) -> AnyConfig:
    """A subnet of the phase's family whose choices are drawn uniformly from the phase's."""
    return _subnet(phase, rng.choice, resolution, width)


def phase_subnets(phase: Phase, width: float) -> dict[str, AnyConfig]:
    """The subnets evaluated at the end of a phase: its largest, its smallest, and
    `eval_subnets` random ones (seeded by the phase's seed)."""
    r = phase.eval_size
    subnets = {
        name: _subnet(phase, pick, r, width) for name, pick in (("largest", max), ("smallest", min))
    }
    rng = random.Random(f"eval/{phase.seed}")
    for i in range(phase.eval_subnets):
        subnets[f"random{i}"] = sample_subnet(rng, phase, r, width)
    return subnets


def _param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Weight decay on weights only: never on batch-norm parameters nor biases (OFA)."""
    no_decay: set[int] = set()  # parameter ids
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            no_decay.update(id(p) for p in module.parameters(recurse=False))
    for name, param in model.named_parameters():
        if name.endswith(".bias"):
            no_decay.add(id(param))
    params = list(model.parameters())
    return [
        {"params": [p for p in params if id(p) not in no_decay], "weight_decay": weight_decay},
        {"params": [p for p in params if id(p) in no_decay], "weight_decay": 0.0},
    ]


def make_optimizer(model: nn.Module, phase: Phase) -> torch.optim.SGD:
    """The phase's SGD over two parameter groups (with and without weight decay)."""
    return torch.optim.SGD(
        _param_groups(model, phase.weight_decay),
        lr=phase.lr,
        momentum=phase.momentum,
        nesterov=phase.nesterov,
    )


def teacher_network(supernet: Supernet) -> nn.Module:
    """The supernet's full network as a static net without dropout, in training mode: BN
    on batch statistics, as OFA's teacher."""
    if isinstance(supernet, OFAResNet50):
        teacher: nn.Module = supernet.get_active_subnet(ResNetConfig.largest())
    else:
        largest = SubnetConfig.largest(w=supernet.width, family=supernet.family.name)
        teacher = supernet.get_active_subnet(largest)
    for module in teacher.modules():
        if isinstance(module, nn.Dropout):  # the classifier's
            module.p = 0.0
    return teacher.train()


def _loss(
    logits: torch.Tensor, labels: torch.Tensor, soft: torch.Tensor | None, phase: Phase
) -> torch.Tensor:
    loss = F.cross_entropy(logits, labels, label_smoothing=phase.label_smoothing)
    if soft is not None:
        loss = loss + phase.kd_ratio * torch.sum(-soft * F.log_softmax(logits, 1), 1).mean()
    return loss


def train_step(
    model: Supernet,
    optimizer: torch.optim.Optimizer,
    teacher: nn.Module | None,
    phase: Phase,
    images: torch.Tensor,
    labels: torch.Tensor,
    subnets: list[AnyConfig],
    processes: Processes = Processes(),
) -> list[float]:
    """One SGD step: the teacher's soft labels, then each subnet's loss and gradients
    accumulated, averaged over processes; returns the subnets' losses."""
    soft = None
    if teacher is not None:
        with torch.no_grad():
            soft = F.softmax(teacher(images), 1)
    optimizer.zero_grad()  # to None: what a step does not use, it does not update
    losses = []
    for subnet in subnets:
        loss = _loss(model(images, subnet), labels, soft, phase)
        loss.backward()
        losses.append(loss.item())
    processes.average([p.grad for p in model.parameters() if p.grad is not None])
    optimizer.step()
    processes.average(
        [b for name, b in model.named_buffers() if name.endswith(("running_mean", "running_var"))]
    )
    return losses


def _save(
    path: Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    step: int,
    phase: Phase,
    steps: int,
) -> None:
    """Write the checkpoint beside, then rename: an interruption never leaves half a file."""
    partial = path.with_suffix(".partial")
    torch.save(
        {
            "state_dict": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "step": step,
            "steps": steps,
            "phase": phase.to_dict(),
            "supernet": model.name,
        },
        partial,
    )
    os.replace(partial, path)


def _resume_state(
    path: Path, phase: Phase, supernet: str, steps: int, n_classes: int
) -> dict | None:
    """The checkpoint to resume from, if it was written by this very run."""
    if not path.exists():
        return None
    state = torch.load(path, map_location="cpu", weights_only=True)
    written = state.get("supernet")
    if written is None and "width" in state:  # written before checkpoints named it
        written = space.MOBILENET_V3.supernet(state["width"])
    if state.get("phase") != phase.to_dict() or written != supernet:
        raise ValueError(
            f"{path}: written by another schedule or supernet ({written}); "
            f"resume it with the same phase file, --family and --width, or choose another --out"
        )
    if state.get("steps") != steps:
        raise ValueError(
            f"{path}: steps: the run there has {state.get('steps')} steps, this one "
            f"{steps} (another number of processes or another data set); resume "
            f"it as it was started, or choose another --out"
        )
    classes = next(  # the classifier's weight: `classifier.linear.weight` or, ResNet50's,
        value.shape[0]  # `classifier.linear.linear.weight`
        for key, value in state["state_dict"].items()
        if key.startswith("classifier.") and key.endswith(".weight")
    )
    if classes != n_classes:
        raise ValueError(
            f"{path}: the supernet there has {classes} classes, the data "
            f"{n_classes}; choose another --out"
        )
    return state


def _start(
    phase: Phase,
    n_classes: int,
    supernet: str,
    path: Path,
    init: str | Path | None,
    device: torch.device,
    steps: int,
) -> tuple[Supernet, torch.optim.SGD, int]:
    """(model, optimizer, first step): from the phase's own checkpoint when there is one,
    else from `init` (or a seeded initialisation), channels sorted if the phase asks."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(phase.seed)
        model = build_supernet(supernet, n_classes=n_classes, dropout=phase.dropout)
    family = model.family if isinstance(model, OFAResNet50) else model.family.name
    if family != phase.family:
        raise ValueError(
            f"family: phase {phase.name!r} was read for {phase.family} subnets, the supernet "
            f"{model.name} is {family}'s; load the phase for that family"
        )
    optimizer = make_optimizer(model, phase)
    resumed = _resume_state(path, phase, model.name, steps, n_classes)
    if resumed is not None:
        model.load_state_dict(resumed["state_dict"])
        place(model, device)  # first: the optimizer state follows its parameters' device
        optimizer.load_state_dict(resumed["optimizer"])
        return model, optimizer, resumed["step"]
    if init is not None:
        load_checkpoint(model, init)
    elif isinstance(model, OFAResNet50):
        model.zero_last_gamma()
    if phase.sort_channels:
        assert isinstance(model, ElasticSupernet)  # a ResNet50 phase cannot sort (Phase)
        sort_channels(model, phase.kept_expand_ratios)
    return place(model, device), optimizer, 0


def train_phase(
    phase: Phase,
    data: Splits,
    out: str | Path,
    *,
    supernet: str = DEFAULT_SUPERNET,
    init: str | Path | None = None,
    teacher: str | Path | None = None,
    processes: Processes = Processes(),
    stop_after: int | None = None,
    log: Callable[[str], None] = print,
) -> Supernet:
    """Run (or resume) one phase of `supernet` (OFA's model-zoo name, of the phase's
    family), writing `out/checkpoint.pt` and, when finished, `out/eval.json`. `init`
    starts from another phase's weights; `teacher` is required when the phase distils.
    `stop_after` ends this invocation after that step (resumable)."""
    out = Path(out)
    path = out / CHECKPOINT
    if phase.kd_ratio > 0 and teacher is None:
        raise ValueError(
            f"teacher: phase {phase.name!r} distils (kd_ratio {phase.kd_ratio}); "
            f"give the checkpoint of the full network"
        )
    steps, warmup = phase.total_steps(len(data.train), processes.world)
    say = log if processes.is_main else (lambda _: None)
    device = processes.device
    model, optimizer, start = _start(phase, data.n_classes, supernet, path, init, device, steps)
    stop = steps if stop_after is None else min(steps, stop_after)
    if start == steps:
        say(f"[{phase.name}] already finished: {path}")
    elif start > 0:
        say(f"[{phase.name}] resuming {path} at step {start}/{steps}")
    soft_teacher = None
    if teacher is not None and phase.kd_ratio > 0 and start < stop:
        soft_teacher = place(teacher_network(load_supernet(teacher)), device)
    if processes.is_main:
        out.mkdir(parents=True, exist_ok=True)
    model.train()
    window_images, window_start, losses = 0, time.perf_counter(), []
    for step in range(start, stop):
        lr = learning_rate(phase, step, steps, warmup, scale=processes.world)
        for group in optimizer.param_groups:
            group["lr"] = lr
        rng = random.Random(f"{phase.seed}/{step}")
        resolution = rng.choice(phase.resolutions)
        subnets = [
            sample_subnet(rng, phase, resolution, model.width)
            for _ in range(phase.subnets_per_step)
        ]
        indices = step_indices(
            len(data.train), step, phase.batch_size, phase.seed, processes.rank, processes.world
        )
        images, labels = data.train.batch(indices, resolution)
        images, labels = place(images, device), labels.to(device)
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(
                random.Random(f"{phase.seed}/{step}/{processes.rank}").getrandbits(63)
            )
            losses += train_step(
                model, optimizer, soft_teacher, phase, images, labels, subnets, processes
            )
        window_images += len(indices) * processes.world
        done = step + 1
        if done % phase.log_every == 0 or done == stop:
            rate = window_images / (time.perf_counter() - window_start)
            say(
                f"[{phase.name}] step {done}/{steps} loss {sum(losses) / len(losses):.4f} "
                f"lr {lr:.3g} r {resolution} {rate:.1f} images/s"
            )
            window_images, window_start, losses = 0, time.perf_counter(), []
        if processes.is_main and (done % phase.checkpoint_every == 0 or done == stop):
            _save(path, model, optimizer, done, phase, steps)
    processes.barrier()
    if stop == steps and processes.is_main and not (out / EVALUATION).exists():
        _evaluate(model, phase, data, out / EVALUATION, device, say)
    processes.barrier()
    return model


def _evaluate(
    model: Supernet,
    phase: Phase,
    data: Splits,
    path: Path,
    device: torch.device,
    say: Callable[[str], None],
) -> None:
    calibration = fixed_indices(len(data.train), phase.eval_calibration_images, phase.seed)
    results, measured = {}, {}
    for name, config in phase_subnets(phase, model.width).items():
        if config not in measured:  # the full phase's largest and smallest are one net
            measured[config] = subnet_accuracy(model, config, data, calibration, device=device)
        results[name] = {"config": config.to_dict(), "accuracy": measured[config]}
    path.write_text(json.dumps({"phase": phase.name, "subnets": results}, indent=1))
    say(
        f"[{phase.name}] top-1 "
        + ", ".join(f"{name} {r['accuracy']:.3f}" for name, r in results.items())
    )


def train_chain(
    chain: Chain,
    data: Splits,
    out: str | Path,
    *,
    supernet: str = DEFAULT_SUPERNET,
    processes: Processes = Processes(),
    log: Callable[[str], None] = print,
) -> Supernet:
    """All phases in order, each starting from the previous one's checkpoint and distilling
    the teacher phase's; `out/<phase>/`. Finished phases are skipped, so a stopped chain
    resumes where it stopped when run again."""
    out = Path(out)
    model = None
    for i, phase in enumerate(chain.phases):
        init = out / chain.phases[i - 1].name / CHECKPOINT if i else None
        teacher: Path | None = None
        if chain.teacher is not None and phase.kd_ratio > 0:
            teacher = out / chain.teacher / CHECKPOINT
        model = train_phase(
            phase,
            data,
            out / phase.name,
            supernet=supernet,
            init=init,
            teacher=teacher,
            processes=processes,
            log=log,
        )
    assert model is not None  # a chain has at least one phase
    return model
