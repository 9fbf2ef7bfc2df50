"""Writes tests/data/safetensors_sample.safetensors with Hugging Face's own `safetensors` package, so that
tests/test_safetensors.cpp checks vt's reader against the reference writer (not against vt's own writer).
Run with an interpreter that has torch and safetensors: /opt/tv/bin/python scripts/reference/safetensors_sample.py
With --check FILE it instead loads FILE (written by vt) with the reference reader and prints every tensor.
"""
import math
import pathlib
import sys

import torch
from safetensors import safe_open
from safetensors.torch import save_file


def sample_tensors():
    # Values the C++ test rebuilds: a formula in float32, IEEE special values, and numbers exact in F16/BF16.
    return {
        "weight": torch.tensor([math.sin(0.37 * i + 0.1) for i in range(6)], dtype=torch.float32).reshape(2, 3),
        "specials": torch.tensor([-0.0, math.inf, 1e-310, -1.5], dtype=torch.float64),
        "indices": torch.tensor([-1, 2**40, 7], dtype=torch.int64),
        "scalar": torch.tensor(2.5, dtype=torch.float32),
        "empty": torch.zeros(0, 3, dtype=torch.float32),
        "half": torch.tensor([[0.5, -2.0], [65504.0, 2.0**-24]], dtype=torch.float16),
        "brain": torch.tensor([1.0, -3.140625, 2.0**100], dtype=torch.bfloat16),
    }


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "--check":
        with safe_open(sys.argv[2], framework="pt") as f:
            print("metadata", f.metadata())
            for name in f.keys():
                t = f.get_tensor(name)
                print(name, t.dtype, tuple(t.shape), t.flatten().tolist())
        return
    path = pathlib.Path(__file__).resolve().parents[2] / "tests" / "data" / "safetensors_sample.safetensors"
    save_file(sample_tensors(), str(path), metadata={"format": "pt", "note": "quote \" tab \t e-acute \u00e9"})
    print(f"wrote {path} ({path.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
