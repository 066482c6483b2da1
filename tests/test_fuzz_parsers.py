"""Fuzzing the parsers of users' files and settings: random and mutated inputs either parse
to a valid object or are refused with one clean ValueError line, never another exception.

Covered: subnet configs (dict, JSON text, published net.config with its run.config, JSON/JSONL
files), ConfigBatch arrays, training phases and chains, and the campaign spec (the
benchmark settings and the stored spec that `campaign start` reads back)."""

from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from coordinator.services.campaigns import CampaignSpec
from coordinator.services.jobs import BenchOptions, make_spec
from coordinator.state import Devices, Store
from ofa import space
from ofa.batch import ConfigBatch
from ofa.config import SubnetConfig, load_configs, sample_configs
from ofa.schedule import Phase, load_chain, load_phase
from tests.conftest import ASSETS
from tests.fuzzing import FUZZ, assert_one_clean_line, json_values, mutated, odd_values

SCHEDULES = Path(__file__).resolve().parents[1] / "ofa" / "schedules" / "digits"
VALID_CONFIG = sample_configs(1, seed=4, resolutions=(192,), w=1.2)[0].to_dict()
NET_CONFIG = ASSETS / "ofa_specialized" / "note10_lat-30ms_top1-78.4_finetune-75"
PHASE = json.loads((SCHEDULES / "kernel.json").read_text())


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """Module-scoped: hypothesis runs a test body many times; each run takes a fresh
    sub-folder of it (tempfile.mkdtemp(dir=folder))."""
    return tmp_path_factory.mktemp("fuzz-parsers")


def parse_or_refuse(parse, *args):
    """`parse(*args)`, or None when it refused with one clean ValueError line."""
    try:
        return parse(*args)
    except ValueError as exc:
        assert_one_clean_line(exc)
        return None


def check_config(config: SubnetConfig | None) -> None:
    """A parsed config is a real member of the space and survives its own JSON."""
    if config is not None:
        assert SubnetConfig.from_json(config.to_json()) == config
        assert space.MIN_RESOLUTION <= config.r <= space.MAX_RESOLUTION


# ---------------------------------------------------------------- subnet configs
@FUZZ
@given(st.one_of(json_values, mutated(VALID_CONFIG)))
def test_subnet_config_dicts_parse_or_are_refused(data):
    check_config(parse_or_refuse(SubnetConfig.from_dict, data))


def _text_edits(text: str):
    """`text` with a few characters deleted, inserted or replaced."""
    position = st.integers(0, len(text))
    edit = st.tuples(position, st.integers(0, 3), st.text(max_size=4))
    return st.lists(edit, min_size=1, max_size=4).map(lambda edits: _apply(text, edits))


def _apply(text: str, edits) -> str:
    for at, cut, insert in edits:
        text = text[:at] + insert + text[at + cut :]
    return text


@FUZZ
@given(
    st.one_of(
        st.text(max_size=200),
        _text_edits(json.dumps(VALID_CONFIG)),
        st.sampled_from(["[" * 100_000, '{"ks":' * 50_000, "1" * 5000, "NaN"]),
    )
)
def test_subnet_config_json_text_parses_or_is_refused(text):
    check_config(parse_or_refuse(SubnetConfig.from_json, text))


@FUZZ
@given(
    net=mutated(json.loads((NET_CONFIG / "net.config").read_text()), max_mutations=2),
    run=st.one_of(
        st.just(None), json_values, mutated(json.loads((NET_CONFIG / "run.config").read_text()))
    ),
)
def test_published_net_configs_mutated_parse_or_are_refused(folder, net, run):
    here = Path(tempfile.mkdtemp(dir=folder))
    (here / "net.config").write_text(json.dumps(net))
    if run is not None:
        (here / "run.config").write_text(json.dumps(run))
    check_config(parse_or_refuse(SubnetConfig.from_file, here / "net.config"))
    check_config(parse_or_refuse(SubnetConfig.from_net_config, net, 224))


@FUZZ
@given(
    content=st.one_of(
        st.binary(max_size=300),
        st.lists(
            st.one_of(mutated(VALID_CONFIG).map(json.dumps), st.text(max_size=40)), max_size=4
        ).map(lambda lines: "\n".join(lines).encode()),
        st.sampled_from(
            [b"", b"\xff\xfe\x00", b"[" * 200_000, b"\n\n", ("[" * 100_000 + "\n").encode() * 2]
        ),
    )
)
def test_config_files_parse_or_are_refused(folder, content):
    path = Path(tempfile.mkdtemp(dir=folder)) / "configs.jsonl"
    path.write_bytes(content)
    for config in parse_or_refuse(load_configs, path) or []:
        check_config(config)


# ------------------------------------------------------------------ ConfigBatch
def _arrays(columns: int | None):
    entries = st.one_of(
        st.integers(-3, 1100), st.sampled_from([math.nan, math.inf, 2.5, 2**40]), st.booleans()
    )
    row = st.lists(entries, min_size=0, max_size=21) if columns else entries
    return st.tuples(
        st.lists(row, min_size=0, max_size=4),
        st.sampled_from([None, np.int8, np.int64, np.float64, object, bool]),
    )


def _as_array(drawn):
    values, dtype = drawn
    try:
        return np.array(values, dtype=dtype) if dtype is not None else values
    except (ValueError, OverflowError, TypeError):  # numpy refusing the drawn values
        return values


@FUZZ
@given(st.data())
def test_config_batches_parse_or_are_refused(data):
    base = ConfigBatch.from_configs(sample_configs(3, seed=1, resolutions=(160, 224)))
    fields = {"ks": base.ks, "e": base.e, "d": base.d, "r": base.r, "w": base.w}
    for name in data.draw(
        st.lists(st.sampled_from(["ks", "e", "d", "r", "w"]), min_size=1, max_size=3, unique=True)
    ):
        if name == "w":
            fields["w"] = data.draw(st.one_of(odd_values, st.sampled_from([1.0, 1.2])))
            continue
        width = {"ks": space.N_BLOCKS, "e": space.N_BLOCKS, "d": space.N_STAGES}.get(name)
        fields[name] = _as_array(data.draw(_arrays(width)))
    batch = parse_or_refuse(lambda: ConfigBatch(**fields))
    if batch is not None:
        configs = [batch.config(i) for i in range(len(batch))]  # each validated again
        assert ConfigBatch.from_configs(configs).r.tolist() == batch.r.tolist()


# -------------------------------------------------------------- training schedules
@FUZZ
@given(data=st.one_of(json_values, mutated(PHASE)))
def test_phase_files_parse_or_are_refused(folder, data):
    path = Path(tempfile.mkdtemp(dir=folder)) / "phase.json"
    path.write_text(json.dumps(data))
    phase = parse_or_refuse(load_phase, path)
    if phase is not None:
        assert Phase.from_dict(phase.to_dict()) == phase
        steps = parse_or_refuse(phase.total_steps, 1797)  # the digits training set
        if steps is not None:
            assert isinstance(steps[0], int) and 0 <= steps[1] < steps[0]


@FUZZ
@given(chain=mutated(json.loads((SCHEDULES / "chain.json").read_text())), kernel=mutated(PHASE))
def test_chain_files_parse_or_are_refused(folder, chain, kernel):
    here = Path(tempfile.mkdtemp(dir=folder))
    for phase in SCHEDULES.glob("*.json"):
        (here / phase.name).write_text(phase.read_text())
    (here / "kernel.json").write_text(json.dumps(kernel))
    (here / "chain.json").write_text(json.dumps(chain))
    parse_or_refuse(load_chain, here / "chain.json")


# ------------------------------------------------------------------ campaign specs
def check_options(options: BenchOptions) -> None:
    """Settings that parsed can be sent: they fit the BenchSpec message and are finite."""
    spec = make_spec("0" * 64, 1, [("input", [1, 3, 64, 64])], options)
    assert pb_round_trip(spec) == spec
    for name in ("warmup_min_s", "min_time_s", "max_time_s", "target_precision"):
        assert math.isfinite(getattr(options, name)), name


def pb_round_trip(spec):
    return type(spec).FromString(spec.SerializeToString())


OPTIONS = {
    "threads": 2,
    "warmup_runs": 3,
    "warmup_min_s": 0.1,
    "min_runs": 10,
    "min_time_s": 0.5,
    "max_time_s": 5.0,
    "target_precision": 0.02,
}


@FUZZ
@given(st.one_of(json_values, mutated(OPTIONS)))
def test_benchmark_settings_parse_or_are_refused(data):
    if not isinstance(data, dict):
        return  # the callers pass a dict; other types are the caller's bug
    options = parse_or_refuse(BenchOptions.from_dict, data)
    if options is not None:
        check_options(options)


@pytest.fixture(scope="module")
def store(folder):
    store = Store(folder / "campaigns.db")
    token = store.token_by_secret(store.create_token("fuzz"))
    store.register_agent(token, "", ["cpu"], {}, 1, "fuzz")
    yield store
    store.close()


SPEC = json.loads(
    CampaignSpec(
        name="fuzz",
        targets=(Devices(label="cpu"),),
        workload="lut",
        resolutions=(64,),
        options=BenchOptions(**OPTIONS),
    ).to_json()
)


@FUZZ
@given(text=st.one_of(mutated(SPEC).map(json.dumps), _text_edits(json.dumps(SPEC))))
def test_stored_campaign_specs_parse_or_are_refused(store, text):
    """The spec `campaign start` reads back from the database: refused, or a spec whose
    every field has the type and range that starting it relies on."""
    spec = parse_or_refuse(CampaignSpec.from_json, text)
    if spec is None or parse_or_refuse(spec.validate, store) is None:
        return
    assert isinstance(spec.name, str) and spec.name.strip()
    for name in ("repeats", "reference_every", "max_attempts", "seed"):
        value = getattr(spec, name)
        assert isinstance(value, int) and not isinstance(value, bool), (name, value)
    assert spec.width in space.WIDTH_CHOICES
    assert all(isinstance(t, Devices) for t in spec.targets)
    check_options(spec.options)
    assert CampaignSpec.from_json(spec.to_json()) == spec
