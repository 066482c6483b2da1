"""`ofa-agent`: the device-side command line."""

from __future__ import annotations

import json

import click

from agent.device import machine_summary
from agent.measure import BenchSettings, measure


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Measure ONNX models on this device for an ofa-fleet coordinator."""


@main.command()
@click.argument("model", type=click.Path(exists=True, dir_okay=False))
@click.option("--threads", type=click.IntRange(min=1), default=1, show_default=True,
              help="onnxruntime intra-op threads.")
@click.option("--min-runs", type=click.IntRange(min=1), default=BenchSettings.min_runs,
              show_default=True, help="Timed runs at least.")
@click.option("--min-time", type=click.FloatRange(min=0), default=BenchSettings.min_time_s,
              show_default=True, help="Seconds of timed runs at least.")
@click.option("--max-time", type=click.FloatRange(min=0, min_open=True),
              default=BenchSettings.max_time_s, show_default=True,
              help="Stop after this many seconds of timed runs even if imprecise.")
@click.option("--precision", type=click.FloatRange(0, 1, min_open=True, max_open=True),
              default=BenchSettings.target_precision, show_default=True,
              help="Stop once the 95%% CI of the median is within this fraction of it.")
@click.option("--json", "as_json", is_flag=True, help="Print the raw samples and stats as JSON.")
def bench(model: str, threads: int, min_runs: int, min_time: float, max_time: float,
          precision: float, as_json: bool) -> None:
    """Time MODEL (an .onnx file) with the agent's measurement engine."""
    settings = BenchSettings(threads=threads, min_runs=min_runs, min_time_s=min_time,
                             max_time_s=max_time, target_precision=precision)
    try:
        result = measure(model, settings)
    except Exception as exc:  # onnxruntime raises its own types for unreadable models
        raise click.ClickException(f"{model}: cannot be measured: {exc}") from None
    stats = result.stats()
    if as_json:
        click.echo(json.dumps({"model": model, "stats": stats, "samples_ns": result.samples_ns,
                               "session_create_ns": result.session_create_ns,
                               "first_run_ns": result.first_run_ns,
                               "warmup_runs": result.warmup_runs,
                               "stop_reason": result.stop_reason,
                               "onnxruntime": result.onnxruntime_version,
                               "settings": result.settings, "device": machine_summary()}))
        return
    click.echo(f"{model}: median {stats['median_ms']:.3f} ms "
               f"(p10 {stats['p10_ms']:.3f}, p90 {stats['p90_ms']:.3f}, CV {stats['cv']:.1%}), "
               f"{stats['n']} runs, stopped on {result.stop_reason}; "
               f"session {result.session_create_ns / 1e6:.1f} ms, "
               f"first run {result.first_run_ns / 1e6:.1f} ms, onnxruntime {result.onnxruntime_version}")
