"""Measuring one model's latency so that the number means something on a noisy device.

Cold start (session creation, first inference) is timed apart from steady state; warm-up
runs by count and by time; timed runs go in blocks and stop when the confidence interval of
the median is narrow enough or the time cap is hit, and the result says which. Every raw
sample is kept; nothing is trimmed. onnxruntime is the runtime; torch (TorchScript, CUDA
synchronised around the clock) is optional and imported only when a job asks for it.
"""

from __future__ import annotations

import importlib
import io
import math
import re
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import onnxruntime as ort

from agent.disturbance import DisturbanceLimits, Evidence, Monitor
from agent.pinning import claimed_cores, ort_affinities, pinned
from agent.stats import median_ci, summarize

__all__ = [
    "BenchSettings",
    "SettingFlag",
    "SETTING_FLAGS",
    "Measurement",
    "measure",
    "RUNTIMES",
    "MAX_SAMPLES",
    "session_options",
    "session_feeds",
    "gpu_index",
    "ort_session",
    "BoundRunner",
]

RUNTIMES = ("onnxruntime", "torch")
# The most samples one result may carry (the coordinator refuses more): a microsecond-scale
# model timed for a 30 s cap would otherwise report tens of millions. 65,536 runs pin a median
# far tighter than any device holds still, and bound what one report costs the coordinator.
MAX_SAMPLES = 2**16
WARMUP_STABLE = 0.10  # warm-up ends once a block's median is within this of the one before
# onnxruntime providers whose models run in GPU memory, and the device their tensors live on.
# Their inputs are copied there once and their outputs stay there (IOBinding), so a timed run
# is the model and not a host-device copy of its batch; run_with_iobinding synchronises the
# device before it returns, so the clock stops when the GPU has finished.
GPU_PROVIDERS = {"CUDAExecutionProvider": "cuda", "TensorrtExecutionProvider": "cuda"}
# What a provider hands the nodes it cannot run to, before the CPU: TensorRT to CUDA.
FALLBACK_PROVIDERS = {"TensorrtExecutionProvider": ["CUDAExecutionProvider"]}
MODEL_PRECISIONS = ("", "fp32", "fp16", "int8")
# TensorRT builds fp32 kernels unless told otherwise: an fp16 model fails to build (or runs
# in fp32) and a QDQ int8 one runs dequantised. Other providers follow the model's types.
TENSORRT_PRECISION_OPTIONS = {
    "fp16": {"trt_fp16_enable": "True"},
    "int8": {"trt_int8_enable": "True"},
}


@dataclass(frozen=True)
class BenchSettings:
    """How long and how carefully to measure. Defaults: at least 10 warm-up runs and 0.1 s,
    and on until the timings are stable; at least 50 timed runs and 1 s, then stop once the
    half-width of the median's 95% CI is within 2% of the median (or at the 30 s cap)."""

    threads: int = 1
    warmup_runs: int = 10
    warmup_min_s: float = 0.1
    min_runs: int = 50
    min_time_s: float = 1.0
    max_time_s: float = 30.0
    block_runs: int = 10
    target_precision: float = 0.02  # half-width of the median's 95% CI over the median
    runtime: str = "onnxruntime"
    execution_provider: str = "CPUExecutionProvider"
    pin_cores: bool = True  # pin the measuring threads to fixed cores where the OS allows
    model_precision: str = ""  # the model's, as a job's spec says it ("": not said)

    def __post_init__(self) -> None:
        for name in ("threads", "min_runs", "block_runs"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: expected an integer >= 1, got {getattr(self, name)}")
        for name in ("warmup_runs", "warmup_min_s", "min_time_s"):
            if not 0 <= getattr(self, name) < math.inf:  # also refuses nan
                raise ValueError(
                    f"{name}: expected a finite number >= 0, got {getattr(self, name)}"
                )
        if not 0 < self.max_time_s < math.inf:
            raise ValueError(f"max_time_s: expected a finite number > 0, got {self.max_time_s}")
        if not 0 < self.target_precision < 1:
            raise ValueError(
                f"target_precision: expected a fraction in (0, 1), got {self.target_precision}"
            )
        if self.model_precision not in MODEL_PRECISIONS:
            raise ValueError(
                f"model_precision: expected one of fp32, fp16, int8 (or none), got "
                f"{self.model_precision!r:.40}"
            )
        if self.runtime == "torch" and self.model_precision == "int8":
            raise ValueError("model_precision: the torch runtime measures fp32 and fp16 models")
        if self.runtime not in RUNTIMES:
            raise ValueError(
                f"runtime: expected one of {', '.join(RUNTIMES)}, got {self.runtime!r}"
            )


@dataclass(frozen=True)
class SettingFlag:
    """A measurement setting as the command lines take it (`ofa-agent bench`, and `ofa-coord
    campaign create` for the jobs it queues). Its type and default are BenchSettings'."""

    flag: str
    field: str  # the BenchSettings field (and BenchSpec's, on the wire)
    help: str  # what it means
    when_zero: str = ""  # what a job's 0 means, where not the engine's default
    choices: tuple[str, ...] = ()  # the values a text setting takes, where they are few

    @property
    def kind(self) -> type:
        """int, float or str: the BenchSettings field's type."""
        (field_,) = [f for f in fields(BenchSettings) if f.name == self.field]
        return {"int": int, "float": float, "str": str}[str(field_.type)]

    def show(self, value: float) -> str:
        """A value as the help texts show it: `0.5 s` for the seconds fields."""
        return f"{value:g}" + (" s" if self.field.endswith("_s") else "")

    @property
    def job_default(self) -> str:
        """What a job's 0 means: the agent's own setting or the engine's default."""
        default = getattr(BenchSettings(), self.field)
        return self.when_zero or f"the agent's default ({self.show(default)})"


SETTING_FLAGS = (
    SettingFlag(
        "--threads", "threads", "Threads to measure with.", when_zero="each agent's own --threads"
    ),
    SettingFlag("--warmup-runs", "warmup_runs", "Warm-up runs at least (then on until stable)."),
    SettingFlag(
        "--warmup-min-time", "warmup_min_s", "Seconds of warm-up at least (then on until stable)."
    ),
    SettingFlag("--min-runs", "min_runs", "Timed runs at least."),
    SettingFlag("--min-time", "min_time_s", "Seconds of timed runs at least."),
    SettingFlag(
        "--max-time", "max_time_s", "Stop after this many seconds of timed runs even if imprecise."
    ),
    SettingFlag(
        "--max-ci",
        "target_precision",
        "Stop once the 95% CI of the median is within this fraction of it.",
    ),
    SettingFlag("--runtime", "runtime", "Runtime to measure with.", choices=RUNTIMES),
    SettingFlag(
        "--provider",
        "execution_provider",
        "onnxruntime execution provider (`ofa-agent info` lists this device's), or torch's "
        "device (cpu, cuda, cuda:N).",
        when_zero="the runtime's CPU (CPUExecutionProvider, or cpu for torch)",
    ),
)


@dataclass
class Measurement:
    """Raw timings of one model. `stop_reason` is 'precision', 'time_cap' or 'cancelled';
    `evidence` says whether anything competed with the timed runs; `pinned_cores` which
    cores the threads were pinned to (empty: not pinned)."""

    samples_ns: list[int]
    session_create_ns: int
    first_run_ns: int
    warmup_runs: int
    warmup_ns: int
    stop_reason: str
    runtime_versions: dict[str, str]
    settings: dict = field(default_factory=dict)
    evidence: Evidence = field(default_factory=Evidence)
    pinned_cores: tuple[int, ...] = ()

    def stats(self) -> dict[str, float]:
        return summarize(self.samples_ns)


Runner = Callable[[], object]


def session_options(settings: BenchSettings, cores: Sequence[int]) -> ort.SessionOptions:
    """The session a measurement runs in: `settings.threads` intra-op threads (pinned to
    `cores` when there are several), one inter-op thread, sequential execution."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = settings.threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    if len(cores) > 1:
        options.add_session_config_entry(
            "session.intra_op_thread_affinities", ort_affinities(cores)
        )
    return options


def session_feeds(
    session: ort.InferenceSession, input_shapes: Sequence[Sequence[int]] | None
) -> dict[str, np.ndarray]:
    """Seeded random inputs of the model's static shapes (checked against the job's), in
    float16 where the model takes it, else float32."""
    rng = np.random.default_rng(0)
    feeds = {}
    for i, meta in enumerate(session.get_inputs()):
        if any(not isinstance(d, int) for d in meta.shape):
            raise ValueError(
                f"model input {meta.name!r} has a dynamic shape {meta.shape}; "
                "export with static shapes"
            )
        if input_shapes and list(input_shapes[i]) != list(meta.shape):
            raise ValueError(
                f"inputs[{i}]: expected shape {list(input_shapes[i])} (the job's, or bench "
                f"--input-shape), the model takes {meta.shape}"
            )
        dtype = np.float16 if meta.type == "tensor(float16)" else np.float32
        feeds[meta.name] = rng.standard_normal(meta.shape).astype(dtype)
    return feeds


def provider_options(provider: str, precision: str) -> dict[str, str]:
    """What `provider` must be told to run a model of `precision` as such."""
    if provider == "TensorrtExecutionProvider":
        return TENSORRT_PRECISION_OPTIONS.get(precision, {})
    return {}


def ort_session(
    model: str | bytes, options: ort.SessionOptions, provider: str, precision: str = ""
) -> ort.InferenceSession:
    """An onnxruntime session on `provider` (with its FALLBACK_PROVIDERS and the options a
    model of `precision` needs), refused unless onnxruntime enabled that provider: it only
    warns when a provider is missing or fails to start (no CUDA libraries, a TensorRT that
    will not load) and runs the model on the CPU, whose timings would then be reported as
    the provider's. (Which nodes a provider takes is its own choice.)"""
    if provider not in ort.get_available_providers():  # before onnxruntime's own banner
        raise ValueError(
            f"provider: this onnxruntime has no {provider}; it offers "
            f"{', '.join(ort.get_available_providers())}"
        )
    providers: list = [(provider, provider_options(provider, precision))]
    with warnings.catch_warnings():  # its warning says less than the error below
        warnings.filterwarnings("ignore", "Specified provider", UserWarning)
        session = ort.InferenceSession(
            model, options, providers=providers + FALLBACK_PROVIDERS.get(provider, [])
        )
    if provider not in session.get_providers():
        raise ValueError(
            f"provider: onnxruntime could not run the model on {provider} here (it runs on "
            f"{', '.join(session.get_providers())}; this onnxruntime offers "
            f"{', '.join(ort.get_available_providers())})"
        )
    return session


class BoundRunner:
    """One run of a session whose inputs were placed on `device` once and whose outputs stay
    there (see GPU_PROVIDERS). It holds the input tensors: the binding alone does not keep
    host memory alive."""

    def __init__(
        self,
        session: ort.InferenceSession,
        feeds: dict[str, np.ndarray],
        device: str,
        device_id: int = 0,
    ) -> None:
        self.session, self.binding = session, session.io_binding()
        self.inputs = {
            name: ort.OrtValue.ortvalue_from_numpy(array, device, device_id)
            for name, array in feeds.items()
        }
        for name, value in self.inputs.items():
            self.binding.bind_ortvalue_input(name, value)
        for output in session.get_outputs():
            self.binding.bind_output(output.name, device, device_id)

    def __call__(self) -> None:
        self.session.run_with_iobinding(self.binding)


def _onnxruntime_runner(
    model: str | bytes,
    settings: BenchSettings,
    input_shapes: Sequence[Sequence[int]] | None,
    cores: Sequence[int],
) -> tuple[Runner, dict]:
    provider = settings.execution_provider
    precision = settings.model_precision
    session = ort_session(model, session_options(settings, cores), provider, precision)
    feeds = session_feeds(session, input_shapes)
    versions = {"onnxruntime": ort.__version__}
    for name, value in provider_options(provider, precision).items():
        versions[name] = value  # what TensorRT was told
    if provider in GPU_PROVIDERS:
        return BoundRunner(session, feeds, GPU_PROVIDERS[provider]), versions
    run = session.run
    return (lambda: run(None, feeds)), versions


def _torch_device(provider: str) -> str:
    """'cpu', 'cuda' or 'cuda:N'; onnxruntime's provider names are accepted as aliases.
    Anything else (torch's `meta` computes nothing) is refused."""
    name = provider.strip().lower()
    device = {"": "cpu", "cpuexecutionprovider": "cpu", "cudaexecutionprovider": "cuda"}.get(
        name, name
    )
    if not re.fullmatch(r"cpu|cuda(:[0-9]{1,3})?", device):
        raise ValueError(f"provider: torch measures on cpu, cuda or cuda:N, got {provider!r:.40}")
    return device


def gpu_index(settings: BenchSettings) -> int | None:
    """The CUDA device a measurement runs on (its clocks and temperature are recorded), or
    None for one that runs on no GPU."""
    if settings.runtime == "torch":
        device = _torch_device(settings.execution_provider)
        if device == "cuda":
            return 0
        return int(device[5:]) if device.startswith("cuda:") and device[5:].isdigit() else None
    return 0 if settings.execution_provider in GPU_PROVIDERS else None


def _torch_runner(
    model: str | bytes,
    settings: BenchSettings,
    input_shapes: Sequence[Sequence[int]] | None,
    cores: Sequence[int],
) -> tuple[Runner, dict]:
    """A TorchScript model on `settings.execution_provider` ('cpu' or 'cuda[:N]').

    TorchScript rather than `torch.export`: its loader rebuilds only TorchScript types and
    tensors, while `torch.export.load` unpickles Python objects. Agents run it only when
    started with --allow-torch. Its intra-op threads inherit the calling thread's core set
    (`cores` pins only onnxruntime's pool threads one by one)."""
    torch = importlib.import_module("torch")  # optional: only GPU hosts that want it have it
    if not input_shapes:
        raise ValueError(
            "inputs: the torch runtime needs the input shapes (the job's, or bench --input-shape)"
        )
    device = torch.device(_torch_device(settings.execution_provider))
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"provider: torch has no CUDA device here ({torch.__version__})")
    torch.set_num_threads(settings.threads)
    source = io.BytesIO(model) if isinstance(model, bytes) else model
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # TorchScript is deprecated in 2.13
        module = torch.jit.load(source, map_location=device).eval()
    generator = torch.Generator().manual_seed(0)
    inputs = [torch.randn(list(shape), generator=generator).to(device) for shape in input_shapes]
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    def run() -> None:
        with torch.inference_mode():
            module(*inputs)
        sync()  # the clock must not stop before the GPU does

    versions = {"torch": torch.__version__}
    if device.type == "cuda":
        versions["cuda"] = str(torch.version.cuda)
        versions["cuda_device"] = torch.cuda.get_device_name(device)
    return run, versions


def _warm_up(run: Runner, settings: BenchSettings, clock: Callable[[], int]) -> int:
    """Run in blocks until at least `warmup_runs` runs and `warmup_min_s` are done and two
    consecutive block medians agree within WARMUP_STABLE: a model that is still warming
    (caches, allocator, a clock ramping up) keeps getting faster, and a fixed warm-up time
    would be too short for some and mostly idle time for others. Returns the runs made."""
    start = clock()
    floor, cap = start + int(settings.warmup_min_s * 1e9), start + int(settings.max_time_s * 1e9)
    runs, previous = 0, math.nan
    while clock() < cap:  # no warm-up runs forever
        block = []
        for _ in range(settings.block_runs):
            t0 = clock()
            run()
            block.append(clock() - t0)
        runs += settings.block_runs
        median = float(np.median(block))
        stable = abs(median / previous - 1) <= WARMUP_STABLE
        if stable and runs >= settings.warmup_runs and clock() >= floor:
            break
        previous = median
    return runs


def measure(
    model: str | Path | bytes,
    settings: BenchSettings = BenchSettings(),
    input_shapes: Sequence[Sequence[int]] | None = None,
    cancelled: Callable[[], bool] = lambda: False,
    limits: DisturbanceLimits = DisturbanceLimits(),
) -> Measurement:
    """Load `model` in `settings.runtime` and time it. `cancelled` is polled between blocks
    of runs; when it turns true the measurement ends with stop_reason 'cancelled'. The
    timed runs are watched for disturbance, judged by `limits`."""
    with (
        claimed_cores(settings.threads if settings.pin_cores else 0) as claimed,
        pinned(claimed) as cores,
    ):
        return _measure(model, settings, input_shapes, cancelled, limits, cores)


def _measure(
    model: str | Path | bytes,
    settings: BenchSettings,
    input_shapes: Sequence[Sequence[int]] | None,
    cancelled: Callable[[], bool],
    limits: DisturbanceLimits,
    cores: tuple[int, ...],
) -> Measurement:
    make_runner = _torch_runner if settings.runtime == "torch" else _onnxruntime_runner
    clock = time.perf_counter_ns
    start = clock()
    run, versions = make_runner(
        model if isinstance(model, bytes) else str(model), settings, input_shapes, cores
    )
    session_create_ns = clock() - start

    start = clock()
    run()
    first_run_ns = clock() - start

    warmup_start = clock()
    warmups = _warm_up(run, settings, clock)
    warmup_ns = clock() - warmup_start

    samples: list[int] = []
    monitor = Monitor(settings.threads, limits)
    monitor.start()
    begin = clock()
    min_end = begin + int(settings.min_time_s * 1e9)
    cap = begin + int(settings.max_time_s * 1e9)
    while True:
        for _ in range(settings.block_runs):
            t0 = clock()
            run()
            samples.append(clock() - t0)
        monitor.tick()
        now = clock()
        if cancelled():
            reason = "cancelled"
            break
        if len(samples) >= settings.min_runs and now >= min_end:
            low, high = median_ci(np.asarray(samples))
            if (high - low) / (2 * float(np.median(samples))) <= settings.target_precision:
                reason = "precision"
                break
        if now >= cap or len(samples) + settings.block_runs > MAX_SAMPLES:
            reason = "time_cap"
            break
    blocks = np.asarray(samples, dtype=np.float64).reshape(-1, settings.block_runs)
    evidence = monitor.finish(np.median(blocks, axis=1))
    return Measurement(
        samples,
        session_create_ns,
        first_run_ns,
        warmups,
        warmup_ns,
        reason,
        versions,
        settings=asdict(settings),
        evidence=evidence,
        pinned_cores=cores,
    )
