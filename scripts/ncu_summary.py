"""Where one training step's GPU time goes, from Nsight Compute's per-kernel durations.

  ncu --clock-control none --metrics gpu__time_duration.sum --csv --page raw -c 2000 \
      vt bench-train --device cuda --model vit_cifar --batch 512 > kernels.csv
  python3 scripts/ncu_summary.py kernels.csv [--boundary adamw_kernel] [--top 25]

A step is the launches after the first optimizer launch up to and including the next: the second training
step, past the first one's warm-up. ncu runs each kernel alone, so the sum is the step's time with no launch
gaps: against the step time vt bench-train prints, the difference is what the host and launch latency add.
"""
import argparse
import collections
import csv
import re


def short_name(name):
    name = re.sub(r"^void ", "", name)
    depth, out = 0, []
    for ch in name:  # drop template arguments, then the parameter list
        if ch == "<":
            depth += 1
        elif ch == ">":
            depth -= 1
        elif depth == 0:
            out.append(ch)
    return "".join(out).split("(")[0].strip()[:70]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("csv")
    parser.add_argument("--boundary", default="adamw_kernel", help="the kernel that ends a training step")
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    with open(args.csv, newline="") as f:
        lines = [line for line in f if line.startswith('"')]  # ncu's own messages are not quoted
    rows = list(csv.DictReader(lines))
    units = rows[0]["gpu__time_duration.sum"]
    scale = {"nsecond": 1e-3, "ns": 1e-3, "usecond": 1.0, "us": 1.0, "msecond": 1e3, "ms": 1e3}[units]
    kernels = [(short_name(r["Kernel Name"]), float(r["gpu__time_duration.sum"].replace(",", "")) * scale)
               for r in rows[1:] if r["ID"]]
    ends = [i for i, k in enumerate(kernels) if k[0].endswith(args.boundary)]
    if len(ends) < 2:
        raise SystemExit(f"fewer than two {args.boundary} launches among {len(kernels)}: profile more (-c)")
    # The optimizer may take several launches (one per dtype group): a step ends at the last of a run of them.
    step_ends = [i for n, i in enumerate(ends) if n + 1 == len(ends) or ends[n + 1] != i + 1]
    step = kernels[step_ends[0] + 1:step_ends[1] + 1]
    total = sum(k[1] for k in step)
    by_name = collections.defaultdict(lambda: [0.0, 0])
    for name, us in step:
        by_name[name][0] += us
        by_name[name][1] += 1
    print(f"{len(step)} launches in one training step, {total / 1e3:.2f} ms of kernel time")
    print(f"{'kernel':70} {'launches':>8} {'ms':>8} {'share':>6}")
    for name, (us, count) in sorted(by_name.items(), key=lambda item: -item[1][0])[:args.top]:
        print(f"{name:70} {count:8d} {us / 1e3:8.3f} {100 * us / total:5.1f}%")


if __name__ == "__main__":
    main()
