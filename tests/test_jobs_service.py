"""coordinator/services/jobs.py: model inputs of ONNX files, enqueueing a model (its blob
stored once) and benchmark settings."""

from __future__ import annotations

import pytest

from coordinator.services.jobs import BenchOptions, enqueue_model, model_inputs
from coordinator.state import BlobStore, Store
from proto.ofafleet.v1 import fleet_pb2 as pb
from tests.state.helpers import blob_count


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path / "fleet.db")
    yield s
    s.close()


@pytest.fixture(scope="module")
def lut_model():
    """(lut_key, Artifact) of one real exported LUT entry."""
    from ofa.config import SubnetConfig
    from ofa.nn.export import export_lut_entries

    return next(iter(export_lut_entries(SubnetConfig.smallest(r=64)).items()))


def test_model_inputs_of_real_onnx(lut_model):
    _, artifact = lut_model
    [(name, dims)] = model_inputs(artifact.onnx)
    assert name == "input" and dims == list(artifact.input_shape)


@pytest.mark.parametrize(
    "data",
    [b"not an onnx model at all", b"", b"\x0a\x03abc"],
    ids=["text", "empty", "other-protobuf"],
)
def test_model_inputs_refuses_non_onnx(data):
    with pytest.raises(ValueError, match="^model: not an ONNX model"):
        model_inputs(data)


def test_model_inputs_refuses_dynamic_shapes():
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3])
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g", [x], [y])
    with pytest.raises(ValueError, match="dynamic shape"):
        model_inputs(helper.make_model(graph).SerializeToString())


def test_enqueue_model_stores_the_blob_once(store, lut_model):
    key, artifact = lut_model
    blobs = BlobStore(store)
    options = BenchOptions(threads=2, min_runs=50)
    ids = enqueue_model(
        store,
        blobs,
        artifact.onnx,
        label="cpu",
        options=options,
        lut_key=key,
        repeats=3,
        campaign="c1",
    )
    ids += enqueue_model(store, blobs, artifact.onnx, label="cpu", lut_key=key)
    assert len(set(ids)) == 4
    assert blob_count(store) == 1
    assert len([p for p in blobs.root.rglob("*") if p.is_file()]) == 1
    assert store.job_counts("c1") == {"queued": 3}
    job = store.job(ids[0])
    spec = pb.BenchSpec.FromString(job["spec"])
    assert spec.lut_key == key and spec.model_digest == job["model_digest"] == artifact.sha256
    assert spec.model_size == len(artifact.onnx)
    assert [(i.name, list(i.dims)) for i in spec.inputs] == [("input", list(artifact.input_shape))]
    assert (spec.threads, spec.min_runs, spec.runtime) == (2, 50, "onnxruntime")


def test_enqueue_model_refuses_non_onnx_before_storing(store):
    blobs = BlobStore(store)
    with pytest.raises(ValueError, match="^model: not an ONNX model"):
        enqueue_model(store, blobs, b"garbage bytes", label="cpu")
    assert store.job_counts() == {} and blob_count(store) == 0


def test_bench_options_from_dict():
    options = BenchOptions.from_dict({"threads": 4, "min_time_s": 0.5, "runtime": "torch"})
    assert (options.threads, options.min_time_s, options.runtime) == (4, 0.5, "torch")
    assert BenchOptions.from_dict({}) == BenchOptions()
    with pytest.raises(ValueError, match=r"^settings: unknown field\(s\) bogus, thread;"):
        BenchOptions.from_dict({"thread": 4, "bogus": 1})
    with pytest.raises(ValueError, match=r"^settings\.min_runs: expected >= 0, got -1"):
        BenchOptions.from_dict({"min_runs": -1})
    with pytest.raises(ValueError, match=r"^settings\.runtime:"):
        BenchOptions.from_dict({"runtime": "tflite"})
