"""The agent's GPU paths, exercised on their CPU equivalents: this machine has no GPU, and
its onnxruntime has the CPU provider only.

- A provider onnxruntime cannot start is refused, never measured on the CPU in its name
  (onnxruntime itself only warns and falls back): real sessions.
- GPU providers bind inputs and outputs on the device (IOBinding); the same binder runs here
  on the CPU device, through measure(), on a real exported model.
- NVML: the real binding (nvidia-ml-py, installed with the dev extra) finds no driver here
  and every GPU field is left out. What a present NVML gives is read from a stand-in module,
  the only mock in this file, since no GPU is reachable; it answers what NVML's calls return.
"""

from __future__ import annotations

import sys
import types
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from agent import gpu
from agent.device import device_info, telemetry
from agent.measure import GPU_PROVIDERS, BenchSettings, BoundRunner, gpu_index, measure
from coordinator.server.limits import check_report
from ofa.config import SubnetConfig
from ofa.nn.export import export_lut_entry
from ofa.plan import layer_plan
from proto.ofafleet.v1 import fleet_pb2 as pb

QUICK = {
    "warmup_runs": 2,
    "warmup_min_s": 0.0,
    "min_runs": 10,
    "min_time_s": 0.0,
    "max_time_s": 2.0,
}


@pytest.fixture(scope="module")
def model_bytes() -> bytes:
    return export_lut_entry(layer_plan(SubnetConfig.largest(r=64))[4]).onnx


@pytest.mark.parametrize("provider", ["CUDAExecutionProvider", "TensorrtExecutionProvider"])
@pytest.mark.skipif(
    "CUDAExecutionProvider" in ort.get_available_providers(),
    reason="onnxruntime-gpu is installed: these providers may start here",
)
def test_a_provider_onnxruntime_cannot_start_is_refused_not_run_on_the_cpu(model_bytes, provider):
    with pytest.raises(ValueError) as error:
        measure(model_bytes, BenchSettings(execution_provider=provider, **QUICK))
    message = str(error.value)
    assert message.startswith(f"provider: this onnxruntime has no {provider}")
    assert "CPUExecutionProvider" in message  # what there is


def test_the_device_binding_gives_the_outputs_of_a_plain_run(model_bytes):
    session = ort.InferenceSession(model_bytes, providers=["CPUExecutionProvider"])
    (meta,) = session.get_inputs()
    feeds = {meta.name: np.random.default_rng(1).standard_normal(meta.shape).astype(np.float32)}
    runner = BoundRunner(session, feeds, "cpu")
    runner()
    runner()  # the binding is reused run after run
    bound = runner.binding.copy_outputs_to_cpu()[0]
    np.testing.assert_array_equal(bound, session.run(None, feeds)[0])


def test_measure_times_a_bound_session_when_the_provider_is_a_device_one(model_bytes, monkeypatch):
    """The CUDA path of `_onnxruntime_runner`, with the CPU standing in for the GPU."""
    bound: list[BoundRunner] = []
    monkeypatch.setitem(GPU_PROVIDERS, "CPUExecutionProvider", "cpu")
    original = BoundRunner.__call__
    monkeypatch.setattr(BoundRunner, "__call__", lambda self: (bound.append(self), original(self)))
    result = measure(model_bytes, BenchSettings(**QUICK))
    assert len(result.samples_ns) >= 10 and min(result.samples_ns) > 0
    assert len(bound) >= 1 + 2 + 10  # the first run, the warm-up and the timed runs
    assert len({id(runner) for runner in bound}) == 1  # one binding for the whole measurement


@pytest.mark.parametrize(
    ("runtime", "provider", "index"),
    [
        ("onnxruntime", "CPUExecutionProvider", None),
        ("onnxruntime", "CUDAExecutionProvider", 0),
        ("onnxruntime", "TensorrtExecutionProvider", 0),
        ("torch", "cpu", None),
        ("torch", "cuda", 0),
        ("torch", "cuda:3", 3),
        ("torch", "CUDAExecutionProvider", 0),
    ],
)
def test_the_gpu_a_measurement_runs_on(runtime, provider, index):
    assert gpu_index(BenchSettings(runtime=runtime, execution_provider=provider)) == index


@pytest.mark.skipif(
    Path("/proc/driver/nvidia").exists(), reason="an NVIDIA driver is loaded: NVML is present"
)
def test_without_a_driver_every_gpu_field_is_left_out(monkeypatch):
    gpu._nvml.cache_clear()
    monkeypatch.setitem(sys.modules, "pynvml", __import__("pynvml"))  # the real binding
    try:
        assert gpu._nvml() is None  # nvmlInit finds no libnvidia-ml here
        assert not {k for k in device_info(with_torch=False) if k.startswith("gpu_")}
        assert not {k for k in telemetry(0) if k.startswith("gpu_")}
    finally:
        gpu._nvml.cache_clear()


class NotSupported(Exception):
    """NVML's NVMLError_NotSupported: a GPU that does not report a value."""


def fake_nvml(temperature: float = 47.0) -> types.ModuleType:
    """A stand-in for pynvml with two GPUs (see the module docstring)."""
    module = types.ModuleType("pynvml")
    module.NVML_CLOCK_SM, module.NVML_CLOCK_MEM, module.NVML_TEMPERATURE_GPU = 1, 2, 0
    gpus = {0: "GPU-aaaa", 1: "GPU-bbbb"}  # PCI bus order; the UUIDs go on past these
    memory = types.SimpleNamespace(total=80 * 2**30, used=3 * 2**30, free=77 * 2**30)
    module.nvmlInit = lambda: None
    module.nvmlDeviceGetCount = lambda: len(gpus)
    module.nvmlDeviceGetHandleByIndex = lambda i: gpus[i]
    module.nvmlDeviceGetUUID = lambda handle: handle + "-1111-2222"
    module.nvmlDeviceGetName = lambda h: b"NVIDIA H100" if h == "GPU-aaaa" else "NVIDIA A10"
    module.nvmlSystemGetDriverVersion = lambda: "560.35.03"
    module.nvmlDeviceGetMemoryInfo = lambda h: memory
    module.nvmlDeviceGetClockInfo = lambda h, kind: {1: 1755, 2: 2619}[kind]

    def temperature_of(handle, sensor):
        if handle == "GPU-bbbb":
            raise NotSupported()
        return temperature

    module.nvmlDeviceGetTemperature = temperature_of
    return module


@pytest.fixture
def nvml(monkeypatch):
    gpu._nvml.cache_clear()
    monkeypatch.setitem(sys.modules, "pynvml", fake_nvml())
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setenv("CUDA_DEVICE_ORDER", "PCI_BUS_ID")  # the two GPUs are different models
    yield
    gpu._nvml.cache_clear()


def test_nvml_gives_the_gpu_its_driver_clocks_memory_and_temperature(nvml):
    info = device_info(with_torch=False)
    assert (info["gpu_name"], info["gpu_driver"]) == ("NVIDIA H100", "560.35.03")
    assert info["gpu_memory_bytes"] == 80 * 2**30
    state = telemetry(0)
    assert state["gpu_index"] == 0 and state["gpu_temperature_c"] == 47.0
    assert (state["gpu_sm_clock_mhz"], state["gpu_memory_clock_mhz"]) == (1755.0, 2619.0)
    assert state["gpu_memory_used_bytes"] == 3 * 2**30
    assert "gpu_index" not in telemetry()  # heartbeats name no GPU


def test_a_value_the_gpu_does_not_report_is_left_out(nvml):
    state = gpu.gpu_telemetry(1)
    assert "gpu_temperature_c" not in state and state["gpu_sm_clock_mhz"] == 1755.0


@pytest.mark.parametrize(
    ("visible", "name"),
    [("1,0", "NVIDIA A10"), ("GPU-aaaa", "NVIDIA H100"), ("GPU-bbbb,GPU-aaaa", "NVIDIA A10")],
)
def test_cuda_visible_devices_is_followed_to_the_gpu_nvml_names(nvml, monkeypatch, visible, name):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
    assert gpu.gpu_device_info(0)["gpu_name"] == name


@pytest.mark.parametrize(
    ("visible", "order"),
    [
        ("0", "PCI_BUS_ID"),  # cuda:1 is not visible
        ("", "PCI_BUS_ID"),  # set but empty: CUDA sees no GPU
        ("GPU-", "PCI_BUS_ID"),  # a prefix of both UUIDs
        (None, "FASTEST_FIRST"),  # CUDA's order among different models is not NVML's
    ],
)
def test_a_gpu_that_cannot_be_told_for_sure_gives_no_fields(nvml, monkeypatch, visible, order):
    if visible is None:
        monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    else:
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
    monkeypatch.setenv("CUDA_DEVICE_ORDER", order)
    assert gpu.gpu_telemetry(1) == {}


def test_uuids_name_the_gpu_in_any_device_order(nvml, monkeypatch):
    monkeypatch.setenv("CUDA_DEVICE_ORDER", "FASTEST_FIRST")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "GPU-bbbb-1111,GPU-aaaa")
    assert gpu.gpu_device_info(0)["gpu_name"] == "NVIDIA A10"
    assert gpu.gpu_device_info(1)["gpu_name"] == "NVIDIA H100"


def test_tensorrt_is_told_the_models_precision_and_profiles_refuse_gpu_providers(model_bytes):
    from agent.measure import provider_options
    from agent.profile import profile_nodes

    trt = "TensorrtExecutionProvider"
    assert provider_options(trt, "fp16") == {"trt_fp16_enable": "True"}
    assert provider_options(trt, "int8") == {"trt_int8_enable": "True"}
    assert provider_options(trt, "fp32") == provider_options("CUDAExecutionProvider", "fp16") == {}
    with pytest.raises(ValueError, match="model_precision: expected one of fp32"):
        BenchSettings(model_precision="bf16")
    with pytest.raises(ValueError, match="model_precision: the torch runtime measures fp32"):
        BenchSettings(runtime="torch", model_precision="int8")
    for device in ("meta", "cuda:x", "xla"):
        with pytest.raises(ValueError, match="provider: torch measures on cpu, cuda or cuda:N"):
            gpu_index(BenchSettings(runtime="torch", execution_provider=device))
    with pytest.raises(ValueError, match="profiles are for CPU providers"):
        profile_nodes(model_bytes, BenchSettings(execution_provider=trt))


def test_the_coordinator_takes_gpu_telemetry_and_refuses_a_temperature_out_of_range(nvml):
    def report(state: dict) -> pb.ReportResultRequest:
        return pb.ReportResultRequest(
            agent_id="a1",
            job_id="ab12",
            lease_id="cd34",
            result=pb.Result(
                status=pb.RESULT_STATUS_OK,
                samples_ns=[1000, 1100],
                stop_reason="precision",
                before=pb.Telemetry(**state),
                after=pb.Telemetry(**state),
            ),
        )

    good = report(telemetry(0))
    check_report(good, np.asarray(good.result.samples_ns, dtype=np.int64))
    hot = report({**telemetry(0), "gpu_temperature_c": float("nan")})
    with pytest.raises(ValueError, match=r"result.before.gpu_temperature_c: expected a finite"):
        check_report(hot, np.asarray(hot.result.samples_ns, dtype=np.int64))
