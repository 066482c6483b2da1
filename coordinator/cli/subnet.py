"""Commands over single subnets: sample configs, describe one, export it to ONNX."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import click

from agent.output import JSON, Column, echo_json, format_option, render_fields, render_table
from coordinator.cli.options import (
    RESOLUTIONS,
    batch_option,
    precision_option,
    supernet_options,
)
from coordinator.services.targets import MODEL_FORMAT, Target
from ofa.plan import count_macs, count_params, layer_plan
from ofa.resnet import ResNetConfig
from ofa.zoo import check_family, config_from_file, sample_any


@click.command()
@click.option("-n", "--count", type=click.IntRange(min=0), default=5, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--resolutions", type=RESOLUTIONS, default="224", show_default=True)
@supernet_options
def sample(count: int, seed: int, resolutions: tuple[int, ...], family: str, width: float) -> None:
    """Print COUNT uniformly sampled subnet configs as JSON lines."""
    check_family(family, width)
    for config in sample_any(count, seed, resolutions, width, family):
        click.echo(config.to_json())


@click.command()
@click.argument("config", type=click.Path(exists=True, dir_okay=False))
@format_option()
def describe(config: str, fmt: str) -> None:
    """Show a subnet's id, MACs, parameters and LUT keys.

    CONFIG is a JSON file of any family: our format, OFA's `{"ks", "e", "d", "r"}` (and
    `{"family": "resnet50", "d", "e", "w", "r"}` for OFA-ResNet50), or a published
    `net.config` (its image size is read from the `run.config` beside it)."""
    subnet = config_from_file(config)
    layers = layer_plan(subnet)
    macs, params = count_macs(subnet), count_params(subnet)
    info = {
        "id": subnet.id,
        "config": subnet.to_dict(),
        "macs": macs,
        "params": params,
        "lut_keys": [layer.lut_key for layer in layers],
    }
    if fmt == JSON:
        echo_json(info)
        return
    family, width = (
        ("ResNet50", f"indices {list(subnet.w)}")
        if isinstance(subnet, ResNetConfig)
        else (subnet.family_space.title, f"w{subnet.w}")
    )
    summary = {
        "id": subnet.id,
        "family": family,
        "width": width,
        "resolution": subnet.r,
        "depths": list(subnet.d),
        "MACs": f"{macs / 1e6:.1f} M",
        "params": f"{params / 1e6:.2f} M",
    }
    click.echo(render_fields(summary))
    click.echo()
    rows = [{"macs": layer.macs() / 1e6, "lut_key": layer.lut_key} for layer in layers]
    columns = [Column("MACs (M)", "macs", "{:.2f}".format, "right"), Column("LUT key", "lut_key")]
    click.echo(render_table(rows, columns))


@click.command()
@click.argument("config", type=click.Path(exists=True, dir_okay=False))
@click.option(
    "--out",
    type=click.Path(file_okay=False),
    required=True,
    help="Folder to write the models into.",
)
@click.option(
    "--checkpoint",
    type=click.Path(exists=True, dir_okay=False),
    help="Supernet weights ({'state_dict': ...}); random weights if omitted.",
)
@click.option("--lut-entries", is_flag=True, help="Also export every LUT entry on its own.")
@click.option(
    "--runtime",
    type=click.Choice(sorted(MODEL_FORMAT)),
    default="onnxruntime",
    show_default=True,
    help="The runtime the files are for: ONNX for onnxruntime, TorchScript for torch.",
)
@precision_option
@batch_option
def export(
    config: str,
    out: str,
    checkpoint: str | None,
    lut_entries: bool,
    runtime: str,
    precision: str,
    batch: int,
) -> None:
    """Export a subnet (and optionally its LUT entries) for a measurement target: ONNX
    (opset 17) or TorchScript, fp32, fp16 or int8, at a static batch; the same files a
    campaign for that target measures. `ofa-agent bench FILE` times one on a device.

    Files are named by content: `<subnet id>-<sha256[:12]>.onnx` (`.pt` for TorchScript);
    LUT entries go to `lut/` with an `index.json` mapping each OFA key to its file and input
    shape."""
    from ofa.nn.checkpoint import load_supernet  # torch is imported only when exporting
    from ofa.nn.export import export_model, input_shape, lut_entry_module
    from ofa.nn.supernet import seeded_supernet, static_subnet

    target = Target(runtime, precision=precision, batch=batch)  # refuses torch in int8
    subnet = config_from_file(config)
    supernet = load_supernet(checkpoint) if checkpoint else seeded_supernet(subnet.supernet)
    try:
        network = static_subnet(supernet.eval(), subnet)
    except ValueError as exc:
        raise ValueError(f"{checkpoint}: {exc}") from None  # only a checkpoint can differ
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    suffix = ".pt" if target.model_format == "torchscript" else ".onnx"

    def write(module, shape: tuple[int, ...], subnet_id: str = "") -> tuple[Path, str]:
        """The model written under its content's name; its path and sha256."""
        model = export_model(module, shape, precision, target.model_format)
        digest = hashlib.sha256(model).hexdigest()
        name = f"{subnet_id}-{digest[:12]}" if subnet_id else digest[:16]
        path = folder / f"{name}{suffix}"
        path.write_bytes(model)
        return path, digest

    shape: tuple[int, ...] = (batch, 3, subnet.r, subnet.r)
    path, digest = write(network, shape, subnet.id)
    click.echo(
        f"{path}  {path.stat().st_size / 2**20:.1f} MiB  input {'x'.join(map(str, shape))} "
        f"{precision}  sha256 {digest}"
    )
    if lut_entries:
        folder = folder / "lut"
        folder.mkdir(exist_ok=True)
        index = {}
        for spec in {spec.lut_key: spec for spec in layer_plan(subnet)}.values():
            shape = input_shape(spec, batch)
            path, digest = write(lut_entry_module(spec), shape)
            index[spec.lut_key] = {"file": path.name, "sha256": digest, "input_shape": shape}
        (folder / "index.json").write_text(json.dumps(index, indent=2))
        click.echo(f"{folder}: {len(index)} LUT entries")
