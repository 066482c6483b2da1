"""Regenerate `agent/data/reference.onnx`, the agent's fixed drift-reference model.

It is one OFA LUT entry (a w1.0 stage-2 MBConv with SE, 7x7 kernel, expand 6, 28x28 input), exported
deterministically, so the committed file can be checked against a fresh export. The agent
cannot build it itself: it has no torch.

Run: .venv/bin/python tools/make_reference_model.py [--check]
"""

from __future__ import annotations

import sys
from pathlib import Path

from ofa.nn.export import export_lut_entry
from ofa.plan import LayerSpec

TARGET = Path(__file__).resolve().parents[1] / "agent" / "data" / "reference.onnx"
REFERENCE_SPEC = LayerSpec(
    "expanded_conv",
    (28, 28, 40),
    (28, 28, 40),
    mid=240,
    kernel=7,
    stride=1,
    idskip=True,
    se=True,
    act="relu",
    has_expand=True,
)


def main() -> int:
    data = export_lut_entry(REFERENCE_SPEC).onnx
    if "--check" in sys.argv:
        if not TARGET.exists() or TARGET.read_bytes() != data:
            print(f"{TARGET} is stale: run tools/make_reference_model.py", file=sys.stderr)
            return 1
        return 0
    TARGET.write_bytes(data)
    print(f"wrote {TARGET} ({len(data)} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
