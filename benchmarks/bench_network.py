"""Benchmark of the DF-MVR network (:class:`dfmvr_lib.networks.DFMVRNet`) on the CPU.

Cases:

- ``cpu`` profile (112 px, Tri-UNet base width 16, RedNet-50 width 0.25), a batch of 4 triplets: forward
  (inference: ``eval()`` + ``torch.no_grad()``) and forward+backward (training mode, a squared loss on every output,
  gradients for every parameter), in float32 and in bfloat16 autocast with channels_last weights;
- ``paper`` profile (224 px, base width 64, RedNet-50 width 1.0), 1 triplet: inference only, same two precisions.

Each case also times the backbone and the regressor alone (forward, inference) and counts the convolution /
linear GFLOP of one forward pass (``torch.utils.flop_counter``; involution's multiply-adds are elementwise ops and
not counted). Timings: median and minimum of ``--repeats`` runs after one warm-up run.

OpenMP: unless ``OMP_WAIT_POLICY`` is already set, the script sets it to ``PASSIVE`` before importing torch. On a
2-core machine shared with other processes, the default policy (worker threads spin, waiting for each other at
every parallel region) made the same forward pass 2-100x slower and erratic (RedNet-50 at the cpu profile:
60 ms with PASSIVE, 120-5800 ms without, 45 ms with one thread); the CSV records the policy in use.

Usage: ``.venv/bin/python benchmarks/bench_network.py [--repeats 5] [--threads 2 [1 ...]] [--csv PATH]``.
Prints a table and writes ``results/benchmarks/network.csv`` (+ ``network.md``).
"""
from __future__ import annotations

import argparse
import csv
import datetime
import os
import sys
from contextlib import nullcontext
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch starts its OpenMP runtime (see the docstring)

import torch  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from timing import time_ms  # noqa: E402
from dfmvr_lib.provenance import atomic_path, git_commit, write_text  # noqa: E402
from dfmvr_lib.config import get_config  # noqa: E402
from dfmvr_lib.networks import build_network  # noqa: E402

CASES = (  # profile, triplets, training (forward+backward) timed
    ("cpu", 4, True),
    ("paper", 1, False),
)
PRECISIONS = ("fp32", "bf16+channels_last")


def make_inputs(batch: int, size: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    images = torch.rand(batch, 3, 3, size, size, generator=generator)
    parse_maps = torch.randint(0, 10, (batch, 3, size, size), generator=generator)
    return images, parse_maps


def benchmark_case(profile: str, batch: int, training: bool, precision: str, repeats: int) -> dict:
    config = get_config(profile)
    torch.manual_seed(0)
    model = build_network(config)
    with torch.no_grad():  # non-zero heads so that the backward pass is not degenerate
        for head in model.heads.values():
            head.weight.normal_(0.0, 1e-3)
    low_precision = precision != "fp32"
    if low_precision:
        model = model.to(memory_format=torch.channels_last)
    autocast = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if low_precision else nullcontext
    images, parse_maps = make_inputs(batch, config.image_size)

    def forward():
        with torch.no_grad(), autocast():
            return model(images, parse_maps)

    def forward_backward():
        model.zero_grad(set_to_none=True)
        with autocast():
            out = model(images, parse_maps)
        loss = sum(value.square().mean() for value in vars(out).values())
        loss.backward()

    model.eval()
    encoded = model.encode_inputs(images, parse_maps)
    with torch.no_grad(), autocast():
        fused = model.backbone(encoded)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(images, parse_maps)
    forward_ms, forward_min = time_ms(forward, repeats)

    def backbone():
        with torch.no_grad(), autocast():
            model.backbone(encoded)

    def regressor():
        with torch.no_grad(), autocast():
            model.regressor(fused)

    backbone_ms, _ = time_ms(backbone, max(1, repeats // 2))
    regressor_ms, _ = time_ms(regressor, max(1, repeats // 2))
    row = {
        "profile": profile, "image_size": config.image_size, "triplets": batch,
        "base_width": config.network.base_width, "regressor_width": config.network.regressor_width,
        "precision": precision, "threads": torch.get_num_threads(),
        "forward_ms": round(forward_ms, 1), "forward_backward_ms": None,
        "forward_ms_per_triplet": round(forward_ms / batch, 1),
        "backbone_forward_ms": round(backbone_ms, 1), "regressor_forward_ms": round(regressor_ms, 1),
        "forward_min_ms": round(forward_min, 1), "forward_backward_min_ms": None,
        "parameters_m": round(sum(p.numel() for p in model.parameters()) / 1e6, 2),
        "conv_gflop_forward": round(counter.get_total_flops() / 1e9, 2),
    }
    if training:
        model.train()
        forward_backward_ms, forward_backward_min = time_ms(forward_backward, repeats)
        row["forward_backward_ms"] = round(forward_backward_ms, 1)
        row["forward_backward_min_ms"] = round(forward_backward_min, 1)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, nargs="+", default=[2])
    parser.add_argument("--csv", type=Path, default=ROOT / "results" / "benchmarks" / "network.csv")
    args = parser.parse_args()

    commit, date = git_commit(), datetime.date.today().isoformat()
    policy = os.environ.get("OMP_WAIT_POLICY", "")
    load = round(os.getloadavg()[0], 1)  # other processes on the machine: the timings below compete with them
    rows = []
    for threads in args.threads:
        torch.set_num_threads(threads)
        for profile, batch, training in CASES:
            for precision in PRECISIONS:
                row = benchmark_case(profile, batch, training, precision, args.repeats)
                row.update({"date": date, "git_commit": commit, "torch": torch.__version__,
                            "omp_wait_policy": policy, "load_average_before": load})
                rows.append(row)
                print(f"{threads} threads {profile:>5} {row['image_size']}px x{batch} {precision:>18}: forward "
                      f"{row['forward_ms']} ms, forward+backward {row['forward_backward_ms']} ms", flush=True)

    with atomic_path(args.csv) as temporary, open(temporary, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    dash = lambda value: "-" if value is None else value  # noqa: E731
    header = ("| profile | image | triplets | base width | regressor width | precision | threads | forward ms "
              "| forward ms / triplet | forward+backward ms | backbone / regressor forward ms "
              "| (min: forward / forward+backward) | parameters (M) | conv GFLOP (forward) |")
    lines = [f"# Network benchmark ({date}, commit {commit}, torch {torch.__version__})", "",
             f"`DFMVRNet` (Tri-UNet + RedNet-50) on the CPU ({os.cpu_count()} cores, OMP_WAIT_POLICY={policy}, "
             f"1-minute load average {load} before the runs); median of {args.repeats} runs (minimum in its own "
             "column). `forward` is inference (`eval()`, `torch.no_grad()`); "
             "`forward+backward` is a training-mode pass with a squared loss on every output and gradients for "
             "every parameter. `bf16+channels_last` runs under `torch.autocast('cpu', dtype=torch.bfloat16)` with "
             "the model converted to channels_last. GFLOP counts convolutions and linear layers of one forward "
             "pass (2 FLOP per multiply-add; involution aggregation not counted). Targets (issue 5): a full "
             "training step of the cpu profile (network + renderer + losses) <= 0.5 s per 4 triplets; inference "
             "per triplet at 224 px with the paper's widths <= 1 s. Produced by `benchmarks/bench_network.py`; on a "
             "shared machine the OpenMP workers of competing processes slow single runs down, so rerun on a "
             "quiet machine.", "",
             header, "|" + "---|" * 14]
    for row in rows:
        lines.append(
            f"| {row['profile']} | {row['image_size']} | {row['triplets']} | {row['base_width']} | "
            f"{row['regressor_width']} | {row['precision']} | {row['threads']} | {row['forward_ms']} | "
            f"{row['forward_ms_per_triplet']} | {dash(row['forward_backward_ms'])} | "
            f"{row['backbone_forward_ms']} / {row['regressor_forward_ms']} | "
            f"{row['forward_min_ms']} / {dash(row['forward_backward_min_ms'])} | {row['parameters_m']} | "
            f"{row['conv_gflop_forward']} |")
    print("\n".join(lines[4:]))
    write_text(args.csv.with_suffix(".md"), "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
