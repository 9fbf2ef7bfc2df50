"""PyTorch reference for the training-step speed of the CIFAR presets (timm's models, same shapes as vt's).

Run: /opt/tv/bin/python bench/pytorch_train_step.py [vit_cifar|tnt_cifar] [batch]   (timm over Debian's
python3-torch). Prints images/s of forward + backward + AdamW on random data, median of 5 steps after 2
warm-up steps, with torch.set_num_threads(2) - the same work `vt compare` times as "train img/s (model)"
(plus the optimizer step).
"""
import contextlib
import statistics
import sys
import time

import torch

with contextlib.redirect_stdout(sys.stderr):
    from timm.models.tnt import TNT
    from timm.models.vision_transformer import VisionTransformer


def main():
    name = sys.argv[1] if len(sys.argv) > 1 else "vit_cifar"
    batch = int(sys.argv[2]) if len(sys.argv) > 2 else 128
    torch.set_num_threads(2)
    torch.manual_seed(0)
    if name == "vit_cifar":
        model = VisionTransformer(img_size=32, patch_size=4, embed_dim=192, depth=7, num_heads=3, num_classes=10,
                                  drop_path_rate=0.1)
    else:  # timm's TNT has a fixed 7x7 pixel conv; vt's tnt_cifar uses 3x3 (a little cheaper)
        model = TNT(img_size=32, patch_size=4, embed_dim=192, inner_dim=12, depth=7, num_heads_outer=3,
                    num_heads_inner=2, num_classes=10, first_stride=1, drop_path_rate=0.1)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.05)
    images, labels = torch.randn(batch, 3, 32, 32), torch.randint(0, 10, (batch,))
    times = []
    for step in range(7):
        start = time.perf_counter()
        loss = torch.nn.functional.cross_entropy(model(images), labels, label_smoothing=0.1)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step >= 2:
            times.append(time.perf_counter() - start)
    print(f"pytorch {torch.__version__} {name} batch {batch}: {batch / statistics.median(times):.1f} images/s")


if __name__ == "__main__":
    main()
