"""Commands over single subnets: sample configs, describe one, export it to ONNX."""

from __future__ import annotations

import json
from pathlib import Path

import click

from agent.output import JSON, Column, echo_json, format_option, render_fields, render_table
from coordinator.cli.options import RESOLUTIONS, WIDTH
from ofa.config import SubnetConfig, sample_configs
from ofa.plan import count_macs, count_params, layer_plan


@click.command()
@click.option("-n", "--count", type=click.IntRange(min=0), default=5, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--resolutions", type=RESOLUTIONS, default="224", show_default=True)
@click.option("--width", type=WIDTH, default="1.0", show_default=True)
def sample(count: int, seed: int, resolutions: tuple[int, ...], width: str) -> None:
    """Print COUNT uniformly sampled subnet configs as JSON lines."""
    for config in sample_configs(count, seed, resolutions, float(width)):
        click.echo(config.to_json())


@click.command()
@click.argument("config", type=click.Path(exists=True, dir_okay=False))
@format_option()
def describe(config: str, fmt: str) -> None:
    """Show a subnet's id, MACs, parameters and LUT keys.

    CONFIG is a JSON file: our format, OFA's `{"ks", "e", "d", "r"}`, or a published
    `net.config` (its image size is read from the `run.config` beside it)."""
    subnet = SubnetConfig.from_file(config)
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
    summary = {
        "id": subnet.id,
        "width": f"w{subnet.w}",
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
    help="Folder to write the ONNX files into.",
)
@click.option(
    "--checkpoint",
    type=click.Path(exists=True, dir_okay=False),
    help="Supernet weights ({'state_dict': ...}); random weights if omitted.",
)
@click.option("--lut-entries", is_flag=True, help="Also export every LUT entry on its own.")
def export(config: str, out: str, checkpoint: str | None, lut_entries: bool) -> None:
    """Export a subnet (and optionally its LUT entries) to ONNX, opset 17, batch 1.

    Files are named by content: `<subnet id>-<sha256[:12]>.onnx`; LUT entries go to
    `lut/` with an `index.json` mapping each OFA key to its file."""
    from ofa.nn.checkpoint import load_supernet  # torch is imported only when exporting
    from ofa.nn.export import export_lut_entries, export_subnet
    from ofa.nn.supernet import OFAMobileNetV3

    subnet = SubnetConfig.from_file(config)
    supernet = load_supernet(checkpoint) if checkpoint else OFAMobileNetV3(subnet.w)
    if supernet.width != subnet.w:
        raise ValueError(
            f"w: the config is a w{subnet.w} subnet, {checkpoint} a w{supernet.width} supernet"
        )
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    artifact = export_subnet(supernet.eval(), subnet)
    path = folder / f"{subnet.id}-{artifact.sha256[:12]}.onnx"
    path.write_bytes(artifact.onnx)
    click.echo(f"{path}  {len(artifact.onnx) / 2**20:.1f} MiB  sha256 {artifact.sha256}")
    if lut_entries:
        (folder / "lut").mkdir(exist_ok=True)
        index = {}
        for key, entry in export_lut_entries(subnet).items():
            name = f"{entry.sha256[:16]}.onnx"
            (folder / "lut" / name).write_bytes(entry.onnx)
            index[key] = {"file": name, "sha256": entry.sha256, "input_shape": entry.input_shape}
        (folder / "lut" / "index.json").write_text(json.dumps(index, indent=2))
        click.echo(f"{folder / 'lut'}: {len(index)} LUT entries")
