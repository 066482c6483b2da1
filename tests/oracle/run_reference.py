"""Drive the reference OFA implementation (PyPI `ofa==0.1.0.post202307202001`) for tests.

Usage: python tests/oracle/run_reference.py REQUEST.json RESPONSE.json

The reference's top-level package is named `ofa`, like the project's, so it runs only here,
in its own process, imported from the folder named by the request's `ref_path`. This script
never imports the project. See tests/oracle/__init__.py for the request/response fields.
"""

import json
import os
import sys
import types
from operator import methodcaller
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]  # project root: must not shadow the reference


def isolate(ref_path):
    """Put the reference first on sys.path and drop the project root (and cwd aliases of it)."""
    kept = []
    for entry in sys.path:
        try:
            same = Path(entry or os.getcwd()).resolve() == ROOT
        except OSError:
            same = False
        if not same:
            kept.append(entry)
    sys.path[:] = [str(Path(ref_path).resolve())] + kept


def install_standins():
    """The reference imports torchvision only for its data pipeline (transforms, datasets,
    transforms.functional), and subclasses transforms.RandomResizedCrop at import time;
    ofa.tutorial also imports ofa.model_zoo, which imports gdown (downloads only). PyPI
    torchvision does not import beside this torch and the oracle never downloads, so we
    register empty modules whose unknown attributes are placeholder classes that fail
    loudly if ever used."""

    class StandIn(types.ModuleType):
        def __getattr__(self, name):
            if name.startswith("__"):
                raise AttributeError(name)

            def unusable(*args, **kwargs):
                raise RuntimeError(f"torchvision stand-in: {self.__name__}.{name} is not available")

            cls = type(name, (), {"__init__": unusable, "get_params": staticmethod(unusable)})
            setattr(self, name, cls)
            return cls

    names = [
        "torchvision",
        "torchvision.transforms",
        "torchvision.transforms.functional",
        "torchvision.datasets",
        "gdown",
    ]
    mods = {n: StandIn(n) for n in names}
    for n, m in mods.items():
        sys.modules[n] = m
        if "." in n:
            parent, child = n.rsplit(".", 1)
            setattr(mods[parent], child, m)


def patch_yaml_load():
    """The reference's LatencyEstimator calls yaml.load(fp) without a Loader, which PyYAML 6
    rejects. Oracle-only workaround: a missing Loader means yaml.SafeLoader."""
    import yaml

    original = yaml.load

    def load(stream, Loader=None):
        return original(stream, Loader=Loader or yaml.SafeLoader)

    yaml.load = load


class RecordingDict(dict):
    """Wraps the reference's `lut` dict to record the keys it looks up, in order."""

    def __init__(self, *args):
        super().__init__(*args)
        self.keys_seen = []

    def __getitem__(self, key):
        self.keys_seen.append(key)
        return super().__getitem__(key)


def shapes(sd):
    return {k: list(v.shape) for k, v in sd.items()}


def lut_eval(estimators, lut_dir, r, fn):
    """Run one reference latency prediction, `fn(estimator)`, on the table for size r; returns
    (ms, keys, error)."""
    from ofa.tutorial.latency_table import LatencyEstimator

    path = Path(lut_dir) / f"{r}_lookup_table.yaml"
    if not path.exists():
        return None
    if r not in estimators:
        est = LatencyEstimator(url=str(path))
        est.lut = RecordingDict(est.lut)
        estimators[r] = est
    est = estimators[r]
    est.lut.keys_seen = []
    try:
        ms = float(fn(est))
        err = None
    except KeyError as e:  # the table lacks an entry this network needs (e.g. a w1.0 layer)
        ms, err = None, f"KeyError: {e}"
    return ms, list(est.lut.keys_seen), err


def proxyless_lut_eval(path, fn):
    """One ProxylessNASLatencyTable prediction, `fn(table)`, on the table at `path`;
    returns (ms, keys looked up in order)."""
    from ofa.nas.efficiency_predictor import ProxylessNASLatencyTable

    table = ProxylessNASLatencyTable(url=path)
    table.lut = RecordingDict(table.lut)
    return float(fn(table)), list(table.lut.keys_seen)


RESNET_EXPANDS = [0.2, 0.25, 0.35]
RESNET_WIDTHS = [0.65, 0.8, 1.0]
RESNET_RESOLUTIONS = [128, 144, 160, 176, 192, 224, 240, 256]


def run(req):
    import numpy as np
    import torch

    import ofa

    if not Path(ofa.__file__).resolve().is_relative_to(Path(req["ref_path"]).resolve()):
        raise RuntimeError(f"imported the wrong `ofa`: {ofa.__file__}")
    from importlib.metadata import distributions

    from ofa.imagenet_classification.elastic_nn.networks import (
        OFAMobileNetV3,
        OFAProxylessNASNets,
        OFAResNets,
    )
    from ofa.imagenet_classification.networks import get_net_by_name
    from ofa.utils.flops_counter import profile

    version = next(
        d.version for d in distributions(path=[req["ref_path"]]) if d.metadata["Name"] == "ofa"
    )
    lut_dir, proxyless_lut = req.get("lut_dir"), req.get("proxyless_lut")
    if lut_dir or proxyless_lut:
        patch_yaml_load()
    estimators = {}

    torch.manual_seed(req.get("seed", 0))
    family = req.get("family", "mbv3")
    proxyless, resnet = family == "proxyless", family == "resnet50"
    if resnet:
        net = OFAResNets(
            n_classes=req.get("n_classes", 1000),
            dropout_rate=0,
            depth_list=[0, 1, 2],
            expand_ratio_list=RESNET_EXPANDS,
            width_mult_list=RESNET_WIDTHS,
        )
    else:
        net = (OFAProxylessNASNets if proxyless else OFAMobileNetV3)(
            n_classes=req.get("n_classes", 1000),
            dropout_rate=0,
            width_mult=req["width"],
            ks_list=[3, 5, 7],
            expand_ratio_list=[3, 4, 6],
            depth_list=[2, 3, 4],
        )
    n_blocks = 21 if proxyless else 20
    net.eval()
    loaded_keys = None
    if req.get("state_dict"):
        sd = torch.load(req["state_dict"], map_location="cpu", weights_only=True)["state_dict"]
        net.load_state_dict(sd)
        # the reference's load_state_dict renames keys and leaves absent ones at their
        # initial values, so report both sides' keys for a strict comparison
        own = set(net.state_dict())
        loaded_keys = {"missing": sorted(own - set(sd)), "unexpected": sorted(set(sd) - own)}
    if req.get("save_state_dict"):
        torch.save({"state_dict": net.state_dict()}, req["save_state_dict"])

    out_subnets = []
    for spec in req.get("subnets", []):
        r = spec["r"]
        # the reference accepts out-of-space choices (e.g. ks=9) silently; refuse them here
        ok = resnet or (
            len(spec["ks"]) == n_blocks
            and set(spec["ks"]) <= {3, 5, 7}
            and len(spec["e"]) == n_blocks
            and set(spec["e"]) <= {3, 4, 6}
            and len(spec["d"]) == 5
            and set(spec["d"]) <= {2, 3, 4}
        )
        if not ok:
            raise ValueError(f"subnet outside the ks 3/5/7, e 3/4/6, d 2/3/4 space: {spec}")
        if spec.get("state_dict"):  # this subnet's own weights (e.g. BN recalibrated for it)
            net.load_state_dict(
                torch.load(spec["state_dict"], map_location="cpu", weights_only=True)["state_dict"]
            )
        if resnet:
            net.set_active_subnet(d=spec["d"], e=spec["e"], w=spec["w"])
        else:
            # ProxylessNAS's sixth block group (the tail) always runs one block
            depths = spec["d"] + [1] if proxyless else spec["d"]
            net.set_active_subnet(ks=spec["ks"], e=spec["e"], d=depths)
        sub = net.get_active_subnet(preserve_weight=True)
        sub.eval()
        res = {}
        if spec.get("input"):
            x = torch.from_numpy(np.load(spec["input"]).astype(np.float32))
            with torch.no_grad():
                y_super = net(x).numpy()
                y_sub = sub(x).numpy()
            stem = str(Path(spec["input"]).with_suffix(""))
            res["logits_super"], res["logits_sub"] = stem + ".ref_super.npy", stem + ".ref_sub.npy"
            np.save(res["logits_super"], y_super)
            np.save(res["logits_sub"], y_sub)
        res.update(state_dict=shapes(sub.state_dict()), net_config=sub.config)
        # after the state dict: profile() leaves total_ops/total_params buffers on every leaf
        macs, params = profile(sub, (1, 3, r, r))
        res.update(macs=int(macs), params=int(params))
        if proxyless_lut:
            res["lut_ms_net"], res["lut_keys_net"] = proxyless_lut_eval(
                proxyless_lut, methodcaller("predict_network_latency", sub, r)
            )
        elif lut_dir:
            arch = {"ks": spec["ks"], "e": spec["e"], "d": spec["d"], "r": [r]}
            got = lut_eval(
                estimators, lut_dir, r, methodcaller("predict_network_latency_given_spec", arch)
            )
            if got is not None:
                res["lut_ms"], res["lut_keys"], err = got
                res["lut_ms_net"], res["lut_keys_net"], err_net = lut_eval(
                    estimators, lut_dir, r, methodcaller("predict_network_latency", sub, r)
                )
                res["lut_error"] = err or err_net
        out_subnets.append(res)

    out_configs = []
    for path in req.get("net_configs", []):
        path = Path(path)
        config = json.loads(path.read_text())
        size = json.loads((path.parent / "run.config").read_text())["image_size"]
        # build_from_config accepts the old naming itself (`mobile_inverted_conv`,
        # `MBInvertedConvLayer`); the class is picked by the config's own name, as the
        # published set also holds ProxylessNASNets.
        built = get_net_by_name(config["name"]).build_from_config(config)
        built.eval()
        macs, params = profile(built, (1, 3, size, size))
        res = {
            "path": str(path),
            "name": config["name"],
            "image_size": size,
            "macs": int(macs),
            "params": int(params),
        }
        if proxyless_lut and config["name"] == "ProxylessNASNets":
            res["lut_ms_net"], res["lut_keys_net"] = proxyless_lut_eval(
                proxyless_lut,
                methodcaller("predict_network_latency_given_config", config, size),
            )
        elif lut_dir:
            if config["name"] != "MobileNetV3":
                res["lut_error"] = "LatencyEstimator only handles MobileNetV3"
            else:
                got = lut_eval(
                    estimators, lut_dir, size, methodcaller("predict_network_latency", built, size)
                )
                if got is not None:
                    res["lut_ms_net"], res["lut_keys_net"], res["lut_error"] = got
        out_configs.append(res)

    accuracy = None
    if req.get("accuracy"):
        # the tutorial's predictor, with the weights file given instead of its download
        from ofa.tutorial.accuracy_predictor import AccuracyPredictor

        predictor = AccuracyPredictor(pretrained=False, device="cpu")
        predictor.model.load_state_dict(
            torch.load(req["accuracy"]["predictor"], map_location="cpu", weights_only=True)
        )
        population = [
            {"ks": a["ks"], "e": a["e"], "d": a["d"], "r": [a["r"]]}
            for a in req["accuracy"]["subnets"]
        ]
        accuracy = predictor.predict_accuracy(population).reshape(-1).tolist()

    if req.get("resnet_accuracy"):
        # the library's predictor as OFA's ResNet50 tutorial builds it, on the given weights
        from ofa.nas.accuracy_predictor import AccuracyPredictor as LibraryPredictor
        from ofa.nas.accuracy_predictor import ResNetArchEncoder

        encoder = ResNetArchEncoder(
            image_size_list=RESNET_RESOLUTIONS,
            depth_list=[0, 1, 2],
            expand_list=RESNET_EXPANDS,
            width_mult_list=RESNET_WIDTHS,
        )
        spec = req["resnet_accuracy"]
        predictor = LibraryPredictor(encoder, checkpoint_path=spec["predictor"], device="cpu")
        archs = [
            {"d": a["d"], "e": a["e"], "w": a["w"], "image_size": a["r"]} for a in spec["subnets"]
        ]
        with torch.no_grad():
            accuracy = predictor.predict_acc(archs).reshape(-1).tolist()

    evolution = None
    if req.get("evolution"):
        evolution = run_evolution(req["evolution"], torch)
    if req.get("resnet_evolution"):
        evolution = run_resnet_evolution(req["resnet_evolution"], net, torch)

    return {
        "supernet_state_dict": shapes(net.state_dict()),
        "loaded_keys": loaded_keys,
        "subnets": out_subnets,
        "net_configs": out_configs,
        "accuracy": accuracy,
        "evolution": evolution,
        "reference_version": version,
    }


def run_evolution(spec, torch):
    """The tutorial's EvolutionFinder on local Note10 tables; only the search is timed."""
    import random
    import time

    from ofa.tutorial.accuracy_predictor import AccuracyPredictor
    from ofa.tutorial.evolution_finder import EvolutionFinder
    from ofa.tutorial.latency_table import LatencyEstimator, LatencyTable

    patch_yaml_load()
    predictor = AccuracyPredictor(pretrained=False, device="cpu")
    predictor.model.load_state_dict(
        torch.load(spec["predictor"], map_location="cpu", weights_only=True)
    )
    table = LatencyTable.__new__(LatencyTable)  # its constructor downloads; give it files
    table.latency_tables = {
        r: LatencyEstimator(url=str(Path(spec["lut_dir"]) / f"{r}_lookup_table.yaml"))
        for r in (160, 176, 192, 208, 224)
    }
    finder = EvolutionFinder(
        "note10", spec["budget"], table, predictor, max_time_budget=spec.get("generations", 500)
    )
    random.seed(spec.get("seed", 0))
    import numpy as np

    np.random.seed(spec.get("seed", 0))
    started = time.perf_counter()
    _, (best_acc, best_config, latency) = finder.run_evolution_search()
    return {
        "seconds": time.perf_counter() - started,
        "accuracy": float(best_acc),
        "latency_ms": float(latency),
        "config": best_config,
    }


def run_resnet_evolution(spec, ofa_net, torch):
    """The library's EvolutionFinder for OFA-ResNet50 under a MFLOPs budget
    (ResNet50FLOPsModel), with the authors' ResNet50 accuracy predictor; only the search is
    timed. Each seed is one run."""
    import random
    import time

    import numpy as np

    from ofa.nas.accuracy_predictor import AccuracyPredictor as LibraryPredictor
    from ofa.nas.accuracy_predictor import ResNetArchEncoder
    from ofa.nas.efficiency_predictor import ResNet50FLOPsModel
    from ofa.nas.search_algorithm import EvolutionFinder

    encoder = ResNetArchEncoder(
        image_size_list=RESNET_RESOLUTIONS,
        depth_list=[0, 1, 2],
        expand_list=RESNET_EXPANDS,
        width_mult_list=RESNET_WIDTHS,
    )
    predictor = LibraryPredictor(encoder, checkpoint_path=spec["predictor"], device="cpu")
    flops = ResNet50FLOPsModel(ofa_net)
    runs = []
    for seed in spec["seeds"]:
        finder = EvolutionFinder(
            flops,
            predictor,
            max_time_budget=spec.get("generations", 500),
            resolution_mutate_prob=spec.get("resolution_mutate_prob", 0.5),
        )
        random.seed(seed)
        np.random.seed(seed)
        started = time.perf_counter()
        with torch.no_grad():
            _, (accuracy, arch, mflops) = finder.run_evolution_search(spec["budget_mflops"])
        runs.append(
            {
                "seed": seed,
                "seconds": time.perf_counter() - started,
                "accuracy": float(accuracy),
                "mflops": float(mflops),
                "arch": arch,
            }
        )
    return runs


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: run_reference.py REQUEST.json RESPONSE.json")
    req = json.loads(Path(sys.argv[1]).read_text())
    isolate(req["ref_path"])
    install_standins()
    try:
        resp = run(req)
    except Exception as e:
        import traceback

        traceback.print_exc()
        sys.exit(f"run_reference.py failed: {type(e).__name__}: {e}")
    Path(sys.argv[2]).write_text(json.dumps(resp))


if __name__ == "__main__":
    main()
