"""The measurement target: what a latency is a latency *of*, besides the device.

One subnet on one phone has one latency under onnxruntime's CPU provider in fp32 at batch 1,
another in int8, another at batch 32 or under torch on its GPU. Each of these is a target:
runtime, execution provider, precision, batch size and threads. A campaign measures one
target; its models are exported for it (batch, precision, format) and its jobs carry how to
run them (runtime, provider, threads). Results of two targets are never pooled: a LUT and a
predictor are made from one (label, target) and record it, a specialisation is verified on
its predictor's target, and the target's name (`onnxruntime-cpu-int8-b8`) names the LUT's
folder.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from agent.measure import RUNTIMES
from coordinator.services.jobs import MAX_THREADS, BenchOptions
from coordinator.state import Devices
from ofa.config import show
from ofa.nn.precision import PRECISIONS

__all__ = ["Target", "PRECISIONS", "MAX_BATCH", "can_run", "refuse_unserved", "pick_target"]

MAX_BATCH = 1024  # OFA's GPU specialisations use 64; a batch past this is a typo
# What each runtime runs when the job names no provider (the agent's own default).
CPU = "CPUExecutionProvider"
DEFAULT_PROVIDER = {"onnxruntime": CPU, "torch": "cpu"}
# The model format each runtime loads.
MODEL_FORMAT = {"onnxruntime": "onnx", "torch": "torchscript"}
_PROVIDER = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}(:[0-9]{1,3})?")
_TORCH_DEVICE = re.compile(r"|cpu|cuda(:?[0-9]{1,3})?")
_NAME = re.compile(r"([a-z]+)-([a-z0-9_]{1,64})-(fp32|fp16|int8)-b([0-9]{1,4})(?:-t([0-9]{1,4}))?")


@dataclass(frozen=True)
class Target:
    """runtime, provider ('' for the runtime's default), precision, batch, threads (0: each
    agent's own --threads)."""

    runtime: str = "onnxruntime"
    provider: str = ""
    precision: str = "fp32"
    batch: int = 1
    threads: int = 0

    def __post_init__(self) -> None:
        if self.runtime not in RUNTIMES:
            raise ValueError(f"runtime: expected {' or '.join(RUNTIMES)}, got {show(self.runtime)}")
        if not isinstance(self.provider, str) or (
            self.provider and not _PROVIDER.fullmatch(self.provider)
        ):
            raise ValueError(
                "provider: expected an execution provider's name such as "
                f"CPUExecutionProvider (or cuda:0 for torch), got {show(self.provider)}"
            )
        if self.precision not in PRECISIONS:
            raise ValueError(
                f"precision: expected one of {', '.join(PRECISIONS)}, got {show(self.precision)}"
            )
        if self.runtime == "torch" and not _TORCH_DEVICE.fullmatch(self.provider):
            raise ValueError(
                f"provider: torch runs on cpu, cuda or cuda:N, got {show(self.provider)}"
            )
        if self.runtime == "torch" and self.precision == "int8":
            raise ValueError(
                "precision: int8 models are onnxruntime's (static QDQ quantisation); the torch "
                "runtime measures fp32 and fp16"
            )
        for name, high in (("batch", MAX_BATCH), ("threads", MAX_THREADS)):
            value = getattr(self, name)
            low = 1 if name == "batch" else 0
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise ValueError(f"{name}: expected an integer in {low}..{high}, got {show(value)}")

    @classmethod
    def of(cls, options: BenchOptions, precision: str = "fp32", batch: int = 1) -> Target:
        """The target of a campaign: its jobs' settings and its models' export."""
        return cls(options.runtime, options.execution_provider, precision, batch, options.threads)

    @classmethod
    def from_dict(cls, data: dict) -> Target:
        """The target `to_dict` recorded (in a LUT's or predictor's provenance)."""
        try:
            return cls(*(data[k] for k in ("runtime", "provider", "precision", "batch", "threads")))
        except (KeyError, TypeError) as exc:
            raise ValueError(f"target: expected a recorded target, got {show(data)}") from exc

    @classmethod
    def recorded(cls, provenance: Mapping | None) -> Target | None:
        """The target a LUT's or predictor's provenance records (None: made before targets
        were recorded, or not from the fleet)."""
        found = (provenance or {}).get("target")
        return cls.from_dict(found) if found else None

    def bench_options(self) -> BenchOptions:
        """The settings a job of this target carries (the rest left to the agent)."""
        return BenchOptions(
            threads=self.threads, runtime=self.runtime, execution_provider=self.provider
        )

    @classmethod
    def parse(cls, name: str) -> Target:
        """The target a name (`Target.name`) stands for; ValueError for one that is not a
        target's name. The provider comes back as the name spells it (`cuda`), so the name
        round-trips, which is what tells targets apart."""
        match = _NAME.fullmatch(name) if isinstance(name, str) else None
        if match is None:
            raise ValueError(
                "target: expected RUNTIME-PROVIDER-PRECISION-bBATCH[-tTHREADS], e.g. "
                f"onnxruntime-cpu-fp32-b1 or torch-cuda-fp16-b64, got {show(name)}"
            )
        runtime, provider, precision, batch, threads = match.groups()
        if runtime not in RUNTIMES:
            raise ValueError(f"target: the runtime is {' or '.join(RUNTIMES)}, got {runtime!r}")
        if provider.endswith("executionprovider"):
            raise ValueError(
                f"target: a name spells the provider short, as {provider[:-17] or 'cpu'!r} "
                f"for {provider!r}"
            )
        default = DEFAULT_PROVIDER[runtime].removesuffix("ExecutionProvider").lower()
        return cls(
            runtime,
            "" if provider == default else provider,
            precision,
            int(batch),
            int(threads or 0),
        )

    @property
    def provider_name(self) -> str:
        return self.provider or DEFAULT_PROVIDER[self.runtime]

    @property
    def model_format(self) -> str:
        return MODEL_FORMAT[self.runtime]

    @property
    def name(self) -> str:
        """Folder-safe and unique: `onnxruntime-cpu-fp32-b1`, `torch-cuda0-fp16-b64-t4`."""
        provider = self.provider_name.removesuffix("ExecutionProvider").replace(":", "")
        threads = f"-t{self.threads}" if self.threads else ""
        return f"{self.runtime}-{provider.lower()}-{self.precision}-b{self.batch}{threads}"

    @property
    def export_key(self) -> str:
        """What the models' bytes depend on: '' for ONNX fp32 at batch 1 (what every campaign
        exported before targets existed, so their cached artifacts stay valid)."""
        if (self.model_format, self.precision, self.batch) == ("onnx", "fp32", 1):
            return ""
        return f"{self.model_format}/{self.precision}/b{self.batch}"

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "runtime": self.runtime,
            "provider": self.provider_name,
            "precision": self.precision,
            "batch": self.batch,
            "threads": self.threads,
        }


def can_run(device: dict, target: Target) -> bool:
    """Whether an agent that registered `device` (its DeviceInfo) can run `target`. Every
    onnxruntime build has its CPU provider, even where the agent's probe of them failed."""
    if target.runtime == "torch":
        if not device.get("torch_version"):
            return False
        return not target.provider_name.startswith("cuda") or bool(device.get("cuda_device"))
    return target.provider_name in [*device.get("onnxruntime_providers", []), CPU]


def what_runs(device: dict) -> list[str]:
    """What an agent can run, as runtime:provider names."""
    names = [f"onnxruntime:{p}" for p in {*device.get("onnxruntime_providers", []), CPU}]
    if device.get("torch_version"):
        names += ["torch:cpu"] + (["torch:cuda"] if device.get("cuda_device") else [])
    return names


def refuse_unserved(agents: Iterable[dict], devices: Iterable[Devices], target: Target) -> None:
    """ValueError, naming what they can run, when no registered agent of one of `devices`
    can run `target`: a campaign nobody can measure would wait forever."""
    agents = list(agents)
    for chosen in devices:
        serving = [agent for agent in agents if chosen.includes(agent)]
        if serving and not any(can_run(a["device"], target) for a in serving):
            runs = sorted({name for a in serving for name in what_runs(a["device"])})
            raise ValueError(
                f"target: no agent of {chosen.name} can run {target.runtime} with "
                f"{target.provider_name}; they can run {', '.join(runs) or 'nothing'}"
                + (
                    " (torch needs an agent started with --allow-torch)"
                    if target.runtime == "torch"
                    else ""
                )
            )


def pick_target(names: Iterable[str], wanted: str | None, what: str) -> str:
    """The one target `what` (e.g. "LUT results of pixel7") was measured on, or `wanted`
    among them; ValueError naming them when the choice is missing or not one of them."""
    names = sorted(set(names))
    if wanted is not None:
        if wanted not in names:
            raise ValueError(
                f"target: {what} have no target {wanted!r}; they have {', '.join(names) or 'none'}"
            )
        return wanted
    if len(names) > 1:
        raise ValueError(
            f"target: {what} span targets {', '.join(names)}; choose one with --target"
        )
    if not names:
        raise ValueError(f"target: {what} have none")
    return names[0]
