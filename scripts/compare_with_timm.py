"""Checks vt against timm on the same weights: vt init writes a model, timm loads it, both run one batch.

Run (needs timm: a venv with --system-site-packages over Debian's python3-torch, then pip install --no-deps timm):
    python scripts/compare_with_timm.py build/vt vit_cifar tnt_cifar vit_tiny_patch16_224
Prints the largest absolute difference between the logits for each model.
"""
import contextlib
import os
import subprocess
import sys
import tempfile

import torch
from safetensors.torch import load_file, save_file

with contextlib.redirect_stdout(sys.stderr):
    import timm


def timm_model(metadata):
    get = lambda key: metadata["vt.model." + key]
    common = dict(img_size=int(get("image_size")), patch_size=int(get("patch_size")), in_chans=int(get("in_channels")),
                  num_classes=int(get("num_classes")), embed_dim=int(get("dim")), depth=int(get("depth")),
                  mlp_ratio=float(get("mlp_ratio")), qkv_bias=get("qkv_bias") == "1",
                  global_pool="token" if get("pool") == "cls" else "avg")
    if get("arch") == "vit":
        return timm.models.vision_transformer.VisionTransformer(num_heads=int(get("heads")), **common)
    if get("pixel_kernel") != "7":
        raise SystemExit("timm's TNT has a fixed 7x7 pixel conv; compare with pixel_kernel=7")
    return timm.models.tnt.TNT(inner_dim=int(get("inner_dim")), num_heads_outer=int(get("heads")),
                               num_heads_inner=int(get("inner_heads")), first_stride=int(get("pixel_stride")), **common)


def main():
    vt, names = sys.argv[1], sys.argv[2:]
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            weights, x_path, y_path = (os.path.join(tmp, f) for f in ("w.safetensors", "x.safetensors", "y.safetensors"))
            extra = ["pixel_kernel=7"] if name == "tnt_cifar" else []
            subprocess.run([vt, "init", "--model", name, "--seed", "1", "--out", weights] + extra, check=True,
                           stdout=subprocess.DEVNULL)
            from safetensors import safe_open
            with safe_open(weights, "pt") as f:
                metadata = f.metadata()
            model = timm_model(metadata).eval()
            model.load_state_dict(load_file(weights), strict=True)
            size, channels = int(metadata["vt.model.image_size"]), int(metadata["vt.model.in_channels"])
            x = torch.randn(4, channels, size, size, generator=torch.Generator().manual_seed(0))
            save_file({"x": x}, x_path)
            subprocess.run([vt, "forward", "--checkpoint", weights, "--input", x_path, "--output", y_path], check=True,
                           stdout=subprocess.DEVNULL)
            with torch.no_grad():
                expected = model(x)
            got = load_file(y_path)["logits"]
            print(f"{name}: max |vt - timm| = {(got - expected).abs().max().item():.3g} "
                  f"(logits up to {expected.abs().max().item():.3g})")


if __name__ == "__main__":
    main()
