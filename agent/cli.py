"""`ofa-agent`: the device-side command line."""

from __future__ import annotations

import json
import logging
import math
import os
import signal
import sys
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any, TypeVar

import click

from agent.device import device_info, machine_summary
from agent.measure import SETTING_FLAGS, BenchSettings, measure
from agent.output import JSON, Column, echo_json, format_option, render_fields, render_table
from agent.profile import PROFILE_RUNS, by_op_type, profile_nodes
from agent.settings import (
    MISCONFIGURED,
    default_cache_dir,
    parse_addresses,
    read_ca,
    read_token,
)

Command = TypeVar("Command", bound=Callable[..., Any])


class SettingError(click.ClickException):
    """A setting that no retry can fix: exit code 3, which systemd does not restart."""

    exit_code = MISCONFIGURED


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Measure ONNX models on this device for an ofa-fleet coordinator."""


@main.command()
@click.option(
    "--coordinator",
    required=True,
    help="HOST:PORT of the coordinator; several, comma-separated, of coordinators that share "
    "one database: the agent moves to the next when its own is gone.",
)
@click.option(
    "--token-file",
    required=True,
    metavar="FILE",
    help="File holding this agent's token (from `ofa-coord token create`).",
)
@click.option(
    "--label",
    "labels",
    multiple=True,
    help="Device class this agent measures for (repeatable), e.g. pixel7-cpu.",
)
@click.option(
    "--threads",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Threads to measure with when a job leaves it open.",
)
@click.option(
    "--tls-ca",
    metavar="FILE",
    help="PEM CA certificate: connect with TLS and verify the coordinator.",
)
@click.option(
    "--insecure",
    is_flag=True,
    help="Allow plaintext to a non-loopback coordinator (sends the token in clear).",
)
@click.option(
    "--cache-dir",
    type=click.Path(file_okay=False),
    help="Model cache and the agent id that survives restarts  "
    "[default: ~/.cache/ofa-agent/HASH, one folder per token].",
)
@click.option(
    "--cache-max-mb",
    type=click.IntRange(min=1),
    default=2048,
    show_default=True,
    help="Cached models beyond this many MiB are evicted, least recently used first.",
)
@click.option(
    "--allow-torch",
    is_flag=True,
    help="Accept jobs for the torch runtime (TorchScript models; GPU hosts).",
)
@click.option(
    "--rpc-timeout",
    type=click.FloatRange(0.1, 3600),
    default=15.0,
    show_default=True,
    help="Seconds each call to the coordinator may take before it is retried.",
)
@click.option(
    "--disturbance-check/--no-disturbance-check",
    default=True,
    show_default=True,
    help="Report a measurement that other work competed with as DISTURBED (the coordinator "
    "measures it again later) rather than OK. Its evidence is recorded either way.",
)
@click.option(
    "--pin/--no-pin",
    default=True,
    show_default=True,
    help="Pin the measuring threads to fixed cores (the last ones) where the OS allows.",
)
@click.option(
    "--cooldown/--no-cooldown",
    default=True,
    show_default=True,
    help="Before a job, wait while the device is hot (--hot) or the reference model has "
    "slowed by more than 10%.",
)
@click.option(
    "--hot",
    type=click.FloatRange(0, 200),
    default=80.0,
    show_default=True,
    help="Degrees Celsius from which the device counts as hot.",
)
@click.option("-v", "--verbose", is_flag=True, help="Also log each job and each retry.")
def run(
    coordinator: str,
    token_file: str,
    labels: tuple[str, ...],
    threads: int,
    tls_ca: str | None,
    insecure: bool,
    cache_dir: str | None,
    cache_max_mb: int,
    allow_torch: bool,
    rpc_timeout: float,
    disturbance_check: bool,
    pin: bool,
    cooldown: bool,
    hot: float,
    verbose: bool,
) -> None:
    """Serve benchmark jobs from a coordinator until SIGTERM or Ctrl-C. Exit code 3: a
    setting no retry can fix (the line logged says which, and what to change)."""
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")  # gRPC's own handshake chatter
    from agent.runner import Agent, AgentConfig  # grpc loads only for `run`

    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    logging.getLogger("ofa-agent").setLevel(logging.DEBUG if verbose else logging.INFO)
    try:
        if not math.isfinite(rpc_timeout):
            raise ValueError(
                f"--rpc-timeout: expected a finite number of seconds, got {rpc_timeout}"
            )
        parse_addresses(coordinator)
        token = read_token(token_file)
        config = AgentConfig(
            coordinator=coordinator,
            token=token,
            labels=list(labels),
            cache_dir=Path(cache_dir) if cache_dir else default_cache_dir(token),
            threads=threads,
            cache_max_bytes=cache_max_mb * 2**20,
            tls_ca=read_ca(tls_ca) if tls_ca else None,
            insecure=insecure,
            allow_torch=allow_torch,
            call_timeout_s=rpc_timeout,
            disturbance_check=disturbance_check,
            pin_cores=pin,
            cooldown=cooldown,
            hot_c=hot,
        )
        agent = Agent(config)
    except ValueError as exc:
        raise SettingError(str(exc)) from None
    except OSError as exc:  # the cache folder cannot be made
        raise SettingError(f"--cache-dir {exc.filename}: {exc.strerror}") from None
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: agent.request_stop())
    sys.exit(agent.run())


@main.command()
def info() -> None:
    """Print this device's info as JSON (fields whose probe failed are left out)."""
    click.echo(json.dumps(device_info(), indent=2))


class InputShape(click.ParamType):
    """Comma-separated positive dimensions, e.g. `8,3,224,224`."""

    name = "N,C,H,W"

    def convert(self, value: Any, param: Any, ctx: Any) -> tuple[int, ...]:
        if isinstance(value, tuple):
            return value
        parts = str(value).split(",")
        if not 1 <= len(parts) <= 8 or not all(
            p.strip().isascii() and p.strip().isdigit() for p in parts
        ):
            self.fail(f"expected comma-separated dimensions like 8,3,224,224, got {value!r}")
        dims = tuple(int(p) for p in parts)
        if not all(1 <= d <= 2**16 for d in dims):
            self.fail(f"expected dimensions in 1..65536, got {value!r}")
        return dims


def bench_setting_options(command: Command) -> Command:
    """One option per measurement setting (measure.py's table), defaulting to the engine's;
    BenchSettings checks the values."""
    defaults = BenchSettings()
    for setting in reversed(SETTING_FLAGS):
        command = click.option(
            setting.flag,
            setting.field,
            type=click.Choice(setting.choices) if setting.choices else setting.kind,
            default=getattr(defaults, setting.field),
            show_default=True,
            help=setting.help,
        )(command)
    return command


PROFILE_SLOWEST = 10  # nodes the table lists


def _us(value: float) -> str:
    return f"{value:.1f}"


OP_COLUMNS = [
    Column("op type", "op_type"),
    Column("nodes", "nodes", align="right"),
    Column("us/run", "mean_us", _us, align="right"),
    Column("%", "share", lambda share: f"{100 * share:.1f}", align="right"),
]
NODE_COLUMNS = [
    Column("node", "node"),
    Column("op type", "op_type"),
    Column("us/run", "mean_us", _us, align="right"),
]


@main.command()
@click.argument("model", type=click.Path(exists=True, dir_okay=False))
@bench_setting_options
@click.option(
    "--pin/--no-pin",
    "pin_cores",
    default=True,
    show_default=True,
    help="Pin the measuring threads to fixed cores (the last ones) where the OS allows.",
)
@click.option(
    "--profile",
    is_flag=True,
    help=f"Then record onnxruntime's per-node kernel times ({PROFILE_RUNS} runs in a "
    "profiled session of their own): the table shows them by operator type and the "
    "slowest nodes; JSON every node (`ofa-coord profile show` maps them to OFA's layers).",
)
@click.option(
    "--precision",
    "model_precision",
    type=click.Choice(["fp32", "fp16", "int8"]),
    help="The model's precision, which TensorRT must be told (other providers read it off "
    "the model).",
)
@click.option(
    "--input-shape",
    "shape",
    type=InputShape(),
    help="The model's input shape, e.g. 8,3,224,224: a TorchScript model (--runtime torch) "
    "needs it; an ONNX model's own is checked against it.",
)
@format_option()
def bench(
    model: str,
    fmt: str,
    profile: bool,
    shape: tuple[int, ...] | None,
    model_precision: str | None,
    **settings: Any,
) -> None:
    """Time MODEL (an .onnx file, or TorchScript with --runtime torch; `ofa-coord export`
    writes both for any target) with the agent's measurement engine, and say whether other
    work disturbed it (JSON: also the raw samples, the evidence, the settings and the
    device)."""
    try:
        checked = BenchSettings(**settings, model_precision=model_precision or "")
    except ValueError as exc:  # the one line naming the setting, exit 1
        raise click.ClickException(str(exc)) from None
    shapes = [list(shape)] if shape else None
    try:
        result = measure(model, checked, shapes)
    except Exception as exc:  # onnxruntime raises its own types for unreadable models
        lines = str(exc).strip().splitlines() or [type(exc).__name__]
        raise click.ClickException(f"{model}: cannot be measured: {lines[-1]}") from None
    nodes = profile_nodes(model, checked, shapes) if profile else []
    stats = result.stats()
    if fmt == JSON:
        profiled = {"runs": PROFILE_RUNS, "nodes": [asdict(n) for n in nodes]}
        echo_json(
            {
                "model": model,
                "stats": stats,
                "samples_ns": result.samples_ns,
                "session_create_ns": result.session_create_ns,
                "first_run_ns": result.first_run_ns,
                "warmup_runs": result.warmup_runs,
                "warmup_ns": result.warmup_ns,
                "stop_reason": result.stop_reason,
                "runtime_versions": result.runtime_versions,
                "settings": result.settings,
                "pinned_cores": list(result.pinned_cores),
                "evidence": asdict(result.evidence),
                "device": machine_summary(),
                **({"profile": {**profiled, "by_op_type": by_op_type(nodes)}} if profile else {}),
            }
        )
        return
    click.echo(
        render_fields(
            {
                "model": model,
                **stats,
                "stop_reason": result.stop_reason,
                "disturbed": "; ".join(result.evidence.reasons) or "no",
                "cpu_wait": result.evidence.cpu_wait,
                "pinned_cores": ",".join(map(str, result.pinned_cores)) or "not pinned",
                "session_create_ms": result.session_create_ns / 1e6,
                "first_run_ms": result.first_run_ns / 1e6,
                **{f"{name} version": v for name, v in result.runtime_versions.items()},
            }
        )
    )
    if nodes:
        slowest = sorted(nodes, key=lambda node: -node.mean_us)[:PROFILE_SLOWEST]
        click.echo(f"\nby operator type (kernel times, mean of {PROFILE_RUNS} runs):")
        click.echo(render_table(by_op_type(nodes), OP_COLUMNS))
        click.echo(f"\nslowest {len(slowest)} of {len(nodes)} nodes:")
        click.echo(render_table([asdict(node) for node in slowest], NODE_COLUMNS))
