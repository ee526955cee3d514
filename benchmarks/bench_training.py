"""Benchmark of one reconstruction training step, split into its parts, and of inference.

Training step: the ``cpu`` profile (112 px, its network widths, batch of ``training.batch_size`` triplets, the
profile's parser) in float32 and in bfloat16 autocast + channels_last; parts: network forward, render of the 3 x B
views, losses with the mask loss, the same without the mask loss, backward, optimiser step. Inference: one triplet
with the ``paper`` profile's network at 224 px (no loss, no gradient), and the same for the cpu profile.
Random weights (speed does not depend on training); inputs are random images with random part labels.

Usage: ``.venv/bin/python benchmarks/bench_training.py [--repeats 5] [--threads 2]``.
Prints a table and writes ``results/benchmarks/training.csv`` (+ ``training.md``).
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dfmvr_lib.camera import PerspectiveCamera  # noqa: E402
from dfmvr_lib.config import get_config  # noqa: E402
from dfmvr_lib.face_model.factory import load_face_model  # noqa: E402
from dfmvr_lib.networks import build_network  # noqa: E402
from dfmvr_lib.parsing import build_parser, frozen_parser  # noqa: E402
from dfmvr_lib.provenance import git_commit, write_text  # noqa: E402
from dfmvr_lib.runs import write_csv  # noqa: E402
from dfmvr_lib.scene import render_faces  # noqa: E402
from dfmvr_lib.training.data import TrainingBatch  # noqa: E402
from dfmvr_lib.training.forward import Reconstruction, _float_coefficients, batch_loss, reconstruct  # noqa: E402


def random_batch(config, batch_size: int) -> TrainingBatch:
    size = config.image_size
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(batch_size, 3, 3, size, size, generator=generator)
    parse = torch.randint(0, 10, (batch_size, 3, size, size), generator=generator)
    return TrainingBatch(images=images, parse_maps=parse, network_images=images, network_parse_maps=parse,
                         landmarks_2d=torch.rand(batch_size, 3, 68, 2, generator=generator) * size,
                         landmark_visibility=torch.ones(batch_size, 3, 68, dtype=torch.bool),
                         view_weight=torch.ones(batch_size, 3),
                         landmarks_3d=torch.randn(batch_size, 101, 3, generator=generator) * 40)


def time_step(config, repeats: int) -> dict[str, float]:
    """Median seconds of each part of a training step."""
    model = load_face_model(config.face_model)
    camera = PerspectiveCamera.from_config(config)
    network = build_network(config)
    if config.training.channels_last:
        network = network.to(memory_format=torch.channels_last)
    network.train()
    parser = frozen_parser(build_parser(config.parser))
    optimiser = torch.optim.Adam(network.parameters(), lr=1e-4)
    batch = random_batch(config, config.training.batch_size)
    no_mask = dataclasses.replace(config.losses, use_mask=False)
    parts: dict[str, list[float]] = {}

    def clock(name, function):
        began = time.perf_counter()
        value = function()
        parts.setdefault(name, []).append(time.perf_counter() - began)
        return value

    for repeat in range(repeats + 1):
        began = time.perf_counter()
        context = (torch.autocast("cpu", dtype=torch.bfloat16) if config.training.precision == "bf16"
                   else contextlib.nullcontext())
        with context:
            coefficients = clock("network forward", lambda: network(batch.network_images, batch.network_parse_maps))
        coefficients = _float_coefficients(coefficients)
        render = clock("render", lambda: render_faces(model, coefficients, camera))
        prediction = Reconstruction(coefficients, render, per_view_faces=network.per_view_faces)
        clock("losses without mask", lambda: batch_loss(no_mask, prediction, batch, model, parser))
        terms = clock("losses", lambda: batch_loss(config.losses, prediction, batch, model, parser))
        optimiser.zero_grad(set_to_none=True)
        clock("backward", lambda: terms.total.backward())
        clock("optimiser step", optimiser.step)
        parts.setdefault("whole step", []).append(time.perf_counter() - began - parts["losses without mask"][-1])
        if repeat == 0:                                   # warm-up (numba compilation, allocator)
            parts = {}
    return {name: statistics.median(values) for name, values in parts.items()}


def time_inference(config, repeats: int) -> float:
    model = load_face_model(config.face_model)
    camera = PerspectiveCamera.from_config(config)
    network = build_network(config).eval()
    batch = random_batch(config, 1)
    times = []
    with torch.no_grad():
        for repeat in range(repeats + 1):
            began = time.perf_counter()
            reconstruct(network, model, camera, batch.network_images, batch.network_parse_maps)
            if repeat:
                times.append(time.perf_counter() - began)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--csv", type=Path, default=ROOT / "results" / "benchmarks" / "training.csv")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    base = {"date": datetime.date.today().isoformat(), "git_commit": git_commit(), "torch": torch.__version__,
            "threads": args.threads, "device": "cpu"}
    rows = []
    cpu = get_config("cpu")
    for label, overrides in (("fp32", {"training.precision": "fp32", "training.channels_last": False}),
                             ("bf16 + channels_last", {"training.precision": "bf16", "training.channels_last": True})):
        config = get_config("cpu", overrides)
        for part, seconds in time_step(config, args.repeats).items():
            rows.append({**base, "what": "training step", "profile": "cpu", "image_size": config.image_size,
                         "batch_triplets": config.training.batch_size, "precision": label, "part": part,
                         "seconds": round(seconds, 4)})
    for profile in ("cpu", "paper"):
        config = get_config(profile)
        rows.append({**base, "what": "inference", "profile": profile, "image_size": config.image_size,
                     "batch_triplets": 1, "precision": "fp32", "part": "network + render",
                     "seconds": round(time_inference(config, args.repeats), 4)})
    frame = write_csv(rows, args.csv)
    columns = ["what", "profile", "image_size", "batch_triplets", "precision", "part", "seconds"]
    lines = [f"# Training-step and inference benchmark ({base['date']}, commit {base['git_commit']}, "
             f"{args.threads} threads, torch {torch.__version__}, cpu {cpu.network})", "",
             "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(str(row[c]) for c in columns) + " |" for row in frame.to_dict("records")]
    text = "\n".join(lines) + "\n"
    write_text(args.csv.with_suffix(".md"), text)
    print(text)


if __name__ == "__main__":
    main()
