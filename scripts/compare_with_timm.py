"""Checks vt against timm on the same weights: vt init writes a model, timm loads it, both run one batch.

Run (needs PyTorch and timm, e.g. python3 -m venv /opt/tref && /opt/tref/bin/pip install torch timm):
    python scripts/compare_with_timm.py build/vt vit_cifar tnt_cifar vit_tiny_patch16_224
    python scripts/compare_with_timm.py --img-size 384 build/vt vit_tiny_patch16_224
Prints the largest absolute difference between the logits for each model. With --img-size the models run at
that input size: timm's model is built for it and gets the weights with the position embedding resampled by
timm's resample_abs_pos_embed, and vt resamples its own (vt forward --img-size).
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


def timm_model(metadata, img_size):
    get = lambda key: metadata["vt.model." + key]
    common = dict(img_size=img_size or int(get("image_size")), patch_size=int(get("patch_size")), in_chans=int(get("in_channels")),
                  num_classes=int(get("num_classes")), embed_dim=int(get("dim")), depth=int(get("depth")),
                  mlp_ratio=float(get("mlp_ratio")), qkv_bias=get("qkv_bias") == "1",
                  global_pool="token" if get("pool") == "cls" else "avg")
    if get("arch") == "vit":
        return timm.models.vision_transformer.VisionTransformer(num_heads=int(get("heads")), **common)
    if get("pixel_kernel") != "7":
        raise SystemExit("timm's TNT has a fixed 7x7 pixel conv; compare with pixel_kernel=7")
    return timm.models.tnt.TNT(inner_dim=int(get("inner_dim")), num_heads_outer=int(get("heads")),
                               num_heads_inner=int(get("inner_heads")), first_stride=int(get("pixel_stride")), **common)


def resampled(state, metadata, img_size):
    """The state dict with its position embedding resampled to img_size's patch grid, as timm loads a checkpoint."""
    from timm.layers import resample_abs_pos_embed
    grid = img_size // int(metadata["vt.model.patch_size"])
    key = "pos_embed" if metadata["vt.model.arch"] == "vit" else "patch_pos"
    state[key] = resample_abs_pos_embed(state[key], new_size=[grid, grid], num_prefix_tokens=1)
    return state


def main():
    args = sys.argv[1:]
    img_size = 0
    if args[:1] == ["--img-size"]:
        img_size, args = int(args[1]), args[2:]
    vt, names = args[0], args[1:]
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            weights, x_path, y_path = (os.path.join(tmp, f) for f in ("w.safetensors", "x.safetensors", "y.safetensors"))
            extra = ["pixel_kernel=7"] if name == "tnt_cifar" else []
            subprocess.run([vt, "init", "--model", name, "--seed", "1", "--out", weights] + extra, check=True,
                           stdout=subprocess.DEVNULL)
            from safetensors import safe_open
            with safe_open(weights, "pt") as f:
                metadata = f.metadata()
            model = timm_model(metadata, img_size).eval()
            state = load_file(weights)
            if img_size:
                # At initialisation the position embedding (std 0.02) barely moves the logits; made 50 times larger,
                # a resampling that differs from timm's shows.
                key = "pos_embed" if metadata["vt.model.arch"] == "vit" else "patch_pos"
                state[key] = state[key] * 50
                save_file(state, weights, metadata)
            model.load_state_dict(resampled(state, metadata, img_size) if img_size else state, strict=True)
            size, channels = img_size or int(metadata["vt.model.image_size"]), int(metadata["vt.model.in_channels"])
            x = torch.randn(4, channels, size, size, generator=torch.Generator().manual_seed(0))
            save_file({"x": x}, x_path)
            resize = ["--img-size", str(img_size)] if img_size else []
            subprocess.run([vt, "forward", "--checkpoint", weights, "--input", x_path, "--output", y_path] + resize,
                           check=True, stdout=subprocess.DEVNULL)
            with torch.no_grad():
                expected = model(x)
            got = load_file(y_path)["logits"]
            print(f"{name} at {size}x{size}: max |vt - timm| = {(got - expected).abs().max().item():.3g} "
                  f"(logits up to {expected.abs().max().item():.3g})")


if __name__ == "__main__":
    main()
