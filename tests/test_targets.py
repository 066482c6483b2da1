"""Measurement targets end to end: one device label measured on three targets (batch 8,
int8, an explicitly named execution provider) by a real agent; each gives a complete LUT in
a folder of its own that the reference's LatencyEstimator reads, and the targets' results
are never pooled. Campaigns for a target no agent of the label can run are refused at
create time. This machine's onnxruntime has the CPU provider only (and Azure, which runs
no local models), so the provider campaign names CPUExecutionProvider."""

from __future__ import annotations

import json

import pytest
import yaml
from click.testing import CliRunner

from coordinator.cli.app import main as coord
from coordinator.services.results_export import campaign_results
from coordinator.services.targets import Target
from coordinator.state import BlobStore
from ofa.config import SubnetConfig, sample_configs
from ofa.lut import LatencyTable
from ofa.plan import space_lut_specs
from tests.fleet import Fleet, run_campaign
from tests.oracle import run_reference

R = 32
LABEL = "tgt"
TARGETS = {  # campaign flags -> the target's name
    ("--batch", "8"): "onnxruntime-cpu-fp32-b8",
    ("--precision", "int8"): "onnxruntime-cpu-int8-b1",
    ("--provider", "CPUExecutionProvider"): "onnxruntime-cpu-fp32-b1",
}


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    fleet = Fleet(tmp_path_factory.mktemp("targets"))
    fleet.start_server()
    fleet.start_agent("a", labels=(LABEL, "refuse"))
    fleet.agent_id("a")
    yield fleet
    fleet.close()


@pytest.fixture(scope="module")
def measured(fleet):
    """One LUT campaign per target, each measured once per entry."""
    for flags, name in TARGETS.items():
        run_campaign(
            fleet.db,
            "--name",
            name,
            "--workload",
            "lut",
            "--resolutions",
            str(R),
            "--repeats",
            "1",
            "--reference-every",
            "0",
            *flags,
            label=LABEL,
        )
    return fleet


def export(fleet: Fleet, *args) -> tuple[int, str]:
    result = CliRunner().invoke(
        coord, ["lut", "export", "--db", str(fleet.db), "--device", LABEL, *map(str, args)]
    )
    return result.exit_code, result.output


def test_each_target_gives_a_complete_lut_in_its_own_folder_the_reference_reads(
    measured, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)  # the default folder is relative: luts/LABEL/TARGET
    tables = {}
    for name in TARGETS.values():
        code, said = export(measured, "--target", name)
        assert code == 0, said
        folder = tmp_path / "luts" / LABEL / name
        assert f"on {name}" in said and f"luts/{LABEL}/{name}/{R}_lookup_table.yaml" in said
        table = yaml.safe_load((folder / f"{R}_lookup_table.yaml").read_text())
        assert set(table) == {spec.lut_key for spec in space_lut_specs(R, 1.0)}
        tables[name] = (folder, table)
        export(measured, "--target", name, "--format", "json", "--out", folder)
        provenance = json.loads((folder / f"{LABEL}_lut.json").read_text())["provenance"]
        assert provenance["target"]["name"] == name
        assert ("calibration" in provenance["target"]) == (name.endswith("int8-b1"))
    configs = sample_configs(3, seed=4, resolutions=(R,))
    for folder, _ in tables.values():
        reference = run_reference(
            {
                "width": 1.0,
                "lut_dir": str(folder),
                "subnets": [{**c.to_dict(), "input": None} for c in configs],
            },
            tmp_path,
        )
        ours = LatencyTable.from_ofa_yaml(folder)
        for config, theirs in zip(configs, reference["subnets"], strict=True):
            assert ours.predict_ms(config) == pytest.approx(theirs["lut_ms_net"], rel=1e-9)
    # Eight images cost more than one: on each of the 96 entries' sum, by far (measured
    # 3-5x here); a pooled table would sit between them.
    batch8, batch1 = (
        sum(v["mean"] for v in tables[name][1].values())
        for name in ("onnxruntime-cpu-fp32-b8", "onnxruntime-cpu-fp32-b1")
    )
    assert batch8 > 2 * batch1


def test_the_targets_results_are_never_pooled(measured, tmp_path):
    code, said = export(measured, "--out", tmp_path / "any")
    assert code == 1
    assert "span targets " + ", ".join(sorted(TARGETS.values())) in said
    assert "choose one with --target" in said and not (tmp_path / "any").exists()
    code, said = export(measured, "--target", "onnxruntime-cpu-fp16-b1", "--out", tmp_path)
    assert code == 1 and "have no target 'onnxruntime-cpu-fp16-b1'" in said


def test_the_models_are_exported_for_the_target(measured):
    """Every item of the batch-8 campaign takes 8 inputs; the int8 models hold QDQ pairs."""
    import onnx

    by_name = {c.name: c for c in measured.store.list_campaigns()}
    items = measured.store.campaign_items(by_name["onnxruntime-cpu-fp32-b8"].id)
    assert len(items) == 96 and all(item.inputs[0][1][0] == 8 for item in items)
    int8 = measured.store.campaign_items(by_name["onnxruntime-cpu-int8-b1"].id)
    model = onnx.load(BlobStore(measured.store).path(int8[0].digest))
    assert {"QuantizeLinear", "DequantizeLinear"} <= {n.op_type for n in model.graph.node}


def test_each_job_tells_the_agent_its_models_precision(measured):
    """TensorRT must be told (agent/measure.py); the drift reference is always fp32."""
    from proto.ofafleet.v1 import fleet_pb2 as pb

    by_name = {c.name: c.id for c in measured.store.list_campaigns()}
    for name, precision in (
        ("onnxruntime-cpu-int8-b1", "int8"),
        ("onnxruntime-cpu-fp32-b8", "fp32"),
    ):
        specs = [
            pb.BenchSpec.FromString(row[0])
            for row in measured.store.db.execute(
                "SELECT j.spec FROM jobs j JOIN campaign_jobs cj ON cj.job_id=j.id "
                "WHERE cj.campaign_id=?",
                (by_name[name],),
            ).fetchall()
        ]
        assert len(specs) == 96 and {s.model_precision for s in specs} == {precision}


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (
            ["--provider", "CUDAExecutionProvider"],
            (
                "target: no agent of label:refuse can run onnxruntime with "
                "CUDAExecutionProvider; they can run onnxruntime:"
            ),
        ),
        (["--runtime", "torch"], "(torch needs an agent started with --allow-torch)"),
        (["--runtime", "torch", "--precision", "int8"], "precision: int8 models are onnxruntime's"),
        (["--provider", "bad name"], "provider: expected an execution provider's name"),
        (["--batch", "0"], "Invalid value for '--batch'"),
    ],
)
def test_a_target_no_agent_can_run_is_refused_at_create_time(fleet, flags, message):
    result = CliRunner().invoke(
        coord,
        [
            "campaign",
            "create",
            "--db",
            str(fleet.db),
            "--label",
            "refuse",
            "--name",
            "refused",
            "--workload",
            "lut",
            "--resolutions",
            str(R),
            *flags,
        ],
    )
    assert result.exit_code != 0 and message in result.output
    if "CUDA" in message:
        assert "onnxruntime:CPUExecutionProvider" in result.output
    assert not [c for c in fleet.store.list_campaigns() if c.name == "refused"]


def test_target_names_are_unique_and_folder_safe():
    names = {
        Target().name,
        Target(batch=8).name,
        Target(precision="int8").name,
        Target(threads=2).name,
        Target("torch", "cuda:1", "fp16", 64).name,
        Target(provider="CUDAExecutionProvider").name,
    }
    assert names == {
        "onnxruntime-cpu-fp32-b1",
        "onnxruntime-cpu-fp32-b8",
        "onnxruntime-cpu-int8-b1",
        "onnxruntime-cpu-fp32-b1-t2",
        "torch-cuda1-fp16-b64",
        "onnxruntime-cuda-fp32-b1",
    }
    assert Target(provider="CPUExecutionProvider").name == Target().name  # the default, named
    for name in names:
        assert Target.parse(name).name == name
    with pytest.raises(ValueError, match="torch runs on cpu, cuda or cuda:N"):
        Target("torch", "CUDAExecutionProvider")
    with pytest.raises(ValueError, match="spells the provider short, as 'cuda'"):
        Target.parse("onnxruntime-cudaexecutionprovider-fp32-b1")
    assert Target().export_key == "" and Target(batch=2).export_key == "onnx/fp32/b2"


def test_the_torch_runtime_measures_torchscript_models(fleet, tmp_path):
    """An agent started with --allow-torch measures a torch campaign's TorchScript models
    (batch 2 here); the drift reference stays an onnxruntime job."""
    fleet.start_agent("t", labels=("torch",), extra=("--allow-torch",))
    fleet.agent_id("t")
    configs = tmp_path / "one.jsonl"
    configs.write_text(SubnetConfig.smallest(r=R).to_json() + "\n")
    cid = run_campaign(
        fleet.db,
        "--name",
        "torch",
        "--workload",
        "configs",
        "--configs",
        configs,
        "--runtime",
        "torch",
        "--batch",
        "2",
        "--reference-every",
        "1",
        label="torch",
    )
    rows = list(campaign_results(fleet.store, cid))
    assert {(row["kind"], row["status"]) for row in rows} == {("subnet", "ok"), ("reference", "ok")}
    (item,) = [i for i in fleet.store.campaign_items(cid) if i.kind == "subnet"]
    assert item.inputs == [["input", [2, 3, R, R]]]
    assert BlobStore(fleet.store).path(item.digest).read_bytes()[:2] == b"PK"  # a zip archive
    subnet = [row for row in rows if row["kind"] == "subnet"]
    assert all("torch" in row["runtime_versions"] for row in subnet)


def test_torchscript_export_is_the_same_whatever_was_traced_before():
    """TorchScript numbers the class types a process has traced; the export starts afresh
    each time, so a model's bytes do not depend on what was traced before. (They do depend
    on the call stack, which TorchScript keeps as debug information: the coordinator
    exports every model from one call site.)"""
    from ofa.nn.export import export_torchscript
    from ofa.nn.supernet import OFAMobileNetV3

    supernet = OFAMobileNetV3().eval()
    a, b = sample_configs(2, seed=9, resolutions=(R,))

    def traced(config):
        return export_torchscript(supernet.get_active_subnet(config), (1, 3, R, R), "fp32")

    first, _, again = [traced(config) for config in (a, b, a)]  # one call site: see above
    assert again == first
