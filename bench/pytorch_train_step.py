"""PyTorch reference for `vt bench-train`: timm's ViT and TNT with the CIFAR presets' shapes, the same measurement.

Run (PyTorch from pip: python3 -m venv /opt/tref && /opt/tref/bin/pip install torch timm):
  /opt/tref/bin/python bench/pytorch_train_step.py vit_cifar|tnt_cifar [--batch B] [--device cpu|cuda]
      [--threads T] [--modes eager,amp,compile] [--tf32]
A training step is forward, backward and AdamW on random data; inference is an eval-mode forward under no_grad.
Each is the median of 5 timings after 2 warm-up ones, each timing waiting for the GPU, as vt bench-train does.
Modes: eager (fp32), amp (autocast to bf16, fp32 weights; on the CPU, oneDNN's AMX or AVX512-BF16 kernels) and
compile (torch.compile, fp32).
fp32 means fp32: TF32 matmuls and convolutions are off unless --tf32, as in vt.
"""
import argparse
import contextlib
import resource
import statistics
import sys
import time

import torch

with contextlib.redirect_stdout(sys.stderr):
    from timm.models.tnt import TNT
    from timm.models.vision_transformer import VisionTransformer


def build_model(name):
    if name == "vit_cifar":
        return VisionTransformer(img_size=32, patch_size=4, embed_dim=192, depth=7, num_heads=3, num_classes=10,
                                 drop_path_rate=0.1)
    # timm's TNT has a fixed 7x7 pixel conv: compare with vt's tnt_cifar pixel_kernel=7.
    return TNT(img_size=32, patch_size=4, embed_dim=192, inner_dim=12, depth=7, num_heads_outer=3, num_heads_inner=2,
               num_classes=10, first_stride=1, drop_path_rate=0.1)


def median_seconds(step, device):
    times = []
    for repeat in range(7):
        start = time.perf_counter()
        step()
        if device == "cuda":
            torch.cuda.synchronize()
        if repeat >= 2:
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def bench(name, batch, device, mode):
    torch.manual_seed(0)
    model = build_model(name).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.05)
    images = torch.randn(batch, 3, 32, 32, device=device)  # (B, C, H, W)
    labels = torch.arange(batch, device=device) % 10  # (B,)
    forward = torch.compile(model) if mode == "compile" else model
    autocast = torch.autocast(device, dtype=torch.bfloat16, enabled=mode == "amp")

    def train_step():
        with autocast:
            loss = torch.nn.functional.cross_entropy(forward(images), labels, label_smoothing=0.1)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    def infer_step():
        with torch.no_grad(), autocast:
            forward(images)

    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    model.train()
    train = median_seconds(train_step, device)
    peak = f", peak memory {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB" if device == "cuda" else ""
    model.eval()
    infer = median_seconds(infer_step, device)
    if device == "cpu":  # the process's high-water mark so far (ru_maxrss is in KiB), as vt bench-train reports it
        peak = f", peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB"
    print(f"pytorch {torch.__version__} {mode} {name} batch {batch} on {device}: training {batch / train:.1f} images/s, "
          f"inference {batch / infer:.1f} images/s{peak} (threads {torch.get_num_threads()})")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", nargs="?", default="vit_cifar", choices=["vit_cifar", "tnt_cifar"])
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--threads", type=int, default=2, help="CPU threads (default 2, the development machine's cores)")
    parser.add_argument("--modes", default="eager", help="comma-separated: eager, amp, compile")
    parser.add_argument("--tf32", action="store_true", help="allow TF32 matmuls and convolutions")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.backends.cuda.matmul.allow_tf32 = args.tf32
    torch.backends.cudnn.allow_tf32 = args.tf32
    for mode in args.modes.split(","):
        if mode not in ("eager", "amp", "compile"):
            parser.error(f"unknown mode {mode!r}")
        bench(args.model, args.batch, args.device, mode)


if __name__ == "__main__":
    main()
