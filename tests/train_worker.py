"""Run one progressive-shrinking phase as one torchrun process and save its rank's weights.

Usage (by tests/test_train.py): torchrun --nproc_per_node N tests/train_worker.py SPEC.json
where SPEC holds {"phase": {...}, "out": folder, "init": path or null, "teacher": path or null}.
"""

import json
import sys
from pathlib import Path

import torch

from ofa.nn.data import digits
from ofa.nn.train import Processes, train_phase
from ofa.schedule import Phase


def main() -> None:
    spec = json.loads(Path(sys.argv[1]).read_text())
    torch.set_num_threads(1)
    with Processes.from_env() as processes:
        model = train_phase(
            Phase.from_dict(spec["phase"]),
            digits(),
            spec["out"],
            init=spec["init"],
            teacher=spec["teacher"],
            processes=processes,
        )
        torch.save(model.state_dict(), Path(spec["out"]) / f"rank{processes.rank}.pt")


if __name__ == "__main__":
    main()
