"""GPU profile of the paper configuration (issue "The paper profile on GPUs", item 5).

Parts (each guarded: a failure is recorded in its table and the next part runs; all share one time budget):

1. renderer: ``render_views(..., backend="torch")`` forward and forward + backward for 12 views x 224 px x the
   paper profile's procedural face (``face_model.procedural_vertex_target`` 35000 -> 36,195 vertices, 71,460
   triangles), split into rasterisation and interpolation; pytorch3d's rasteriser the same way when it imports.
   Goal: <= 10 ms forward + backward on the H200.
2. inference: the paper network (``build_network(get_config("paper"))``, 224 px, 3 views, tri-UNet + RedNet-50) per
   triplet, at batch 1 (fp32, bf16 autocast, bf16 + channels_last, bf16 + CUDA graph) and over a batch sweep
   (bf16) for the best batch; network + render at batch 1. Paper: 244 ms on an RTX 3090; goal <= 25 ms at batch 1.
3. training step: the paper profile's step (batch ``training.batch_size`` = 16 triplets, bf16 autocast of the
   network, the renderer and losses in float32, the paper's loss with the mask loss through a frozen BiSeNet at the
   paper's width), split into batch assembly, network + render, losses, backward, optimiser step.
4. training run: N (200) paper-profile steps (Adam, lr 1e-4) on a pool of synthetic triplets rendered on the fly
   (``random_coefficients`` + ``render_faces``), first vs last 20-step mean of the loss: it must fall.

Random weights (speed does not depend on them). Timing: CUDA events around each call after warm-up
(``torch.cuda.synchronize``), medians over repeats; on CPU ``time.perf_counter``.

Known simplifications against the real training (``dfmvr_lib.training.loop.train_reconstruction``): the network's
mask channels are the renderer's exact part labels (the paper profile's default ``input_masks="parser"`` needs a
trained parser run), and the parser of the mask loss has random weights; the 2D landmark targets get the profile's
detector noise (``with_landmark_noise``) as in the loop; the learning rate stays at ``training.learning_rate`` (the
loop's schedule is flat this early); bf16 is an override (the paper profile's ``training.precision`` is "fp32").

Usage::

    python benchmarks/bench_gpu.py                      # on a GPU: writes results/benchmarks/gpu.md (+ $OUT/gpu.md)
    python benchmarks/bench_gpu.py --budget-s 330       # total time budget of the measurements
    python benchmarks/bench_gpu.py --device cpu --quick # tiny CPU dry run (small mesh, widths, steps), temp file

Imports torch and only this library's modules that need no open3d (they pull in numpy, scipy, pandas, matplotlib,
tqdm, pillow, pyyaml); numba is replaced by an inert stub when it does not import (only the CPU code paths need it:
``backend="torch"`` and CUDA tensors never call a numba kernel).
"""
from __future__ import annotations

import argparse
import datetime
import math
import os
import platform
import statistics
import sys
import tempfile
import time
import traceback
import types
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

NUMBA_NOTE = ""
try:  # dfmvr_lib.render imports numba at module level (the CPU kernels); the torch backend does not use it
    import numba  # noqa: F401
    NUMBA_NOTE = f"numba {numba.__version__}"
except Exception as error:  # pragma: no cover - depends on the machine
    stub = types.ModuleType("numba")

    def _njit(*args, **kwargs):
        if len(args) == 1 and callable(args[0]) and not kwargs:
            return args[0]
        return lambda function: function

    stub.njit = stub.jit = _njit
    stub.prange = range
    stub.__version__ = "stub"
    sys.modules["numba"] = stub
    NUMBA_NOTE = f"numba absent ({type(error).__name__}: {error}); an inert stub stands in (CPU backend unusable)"

import torch  # noqa: E402

from dfmvr_lib.camera import PerspectiveCamera, apply_pose, view_yaws  # noqa: E402
from dfmvr_lib.config import get_config  # noqa: E402
from dfmvr_lib.face_model.factory import load_face_model  # noqa: E402
from dfmvr_lib.lighting import shade  # noqa: E402
from dfmvr_lib.networks import build_network  # noqa: E402
from dfmvr_lib.provenance import atomic_path  # noqa: E402
from dfmvr_lib.parsing import build_parser, frozen_parser  # noqa: E402
from dfmvr_lib.precision import autocast  # noqa: E402
from dfmvr_lib.render import interpolate_torch, rasterize_torch, render_views, screen_vertices  # noqa: E402
from dfmvr_lib.render.pytorch3d_backend import pytorch3d_available  # noqa: E402
from dfmvr_lib.scene import random_coefficients, render_faces  # noqa: E402
from dfmvr_lib.training.data import TripletTensors, batch_indices, make_batch, step_generator  # noqa: E402
from dfmvr_lib.training.forward import batch_loss, reconstruct  # noqa: E402
from dfmvr_lib.training.landmark_noise import with_landmark_noise  # noqa: E402

RENDER_GOAL_MS = 10.0
INFERENCE_GOAL_MS = 25.0
PAPER_INFERENCE_MS = 244.0      # the paper, RTX 3090, per triplet
SIDE_YAW = math.radians(30.0)


# ----------------------------------------------------------------------------------------------------------------
# timing and bookkeeping

class Budget:
    def __init__(self, seconds: float):
        self.began = time.monotonic()
        self.deadline = self.began + seconds

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def elapsed(self) -> float:
        return time.monotonic() - self.began


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(function, device: torch.device, budget: Budget, warmup: int = 3, repeats: int = 20,
            cap_s: float = 20.0) -> dict:
    """Median / min ms of ``function()`` after ``warmup`` calls; stops early at ``cap_s`` or the budget (>= 1 timed
    call). CUDA events on GPUs (they include any host waits inside the call), perf_counter on CPU."""
    stop = min(time.monotonic() + cap_s, budget.deadline)
    for _ in range(warmup):
        function()
        if time.monotonic() > stop:
            break
    synchronize(device)
    times = []
    for _ in range(repeats):
        if times and time.monotonic() > stop:
            break
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            function()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end))
        else:
            began = time.perf_counter()
            function()
            times.append((time.perf_counter() - began) * 1e3)
    return {"median_ms": statistics.median(times), "min_ms": min(times), "n": len(times)}


class Report:
    """Markdown tables, rewritten to every target after each part (a run cut short keeps what it measured)."""

    def __init__(self, paths: list[Path], header: list[str]):
        self.paths, self.header, self.sections = paths, header, []

    def section(self, title: str, columns: list[str], intro: str = "") -> dict:
        section = {"title": title, "columns": columns, "rows": [], "notes": [], "intro": intro}
        self.sections.append(section)
        return section

    @staticmethod
    def row(section: dict, **values) -> None:
        section["rows"].append(values)

    def text(self) -> str:
        lines = list(self.header)
        for s in self.sections:
            lines += ["", f"## {s['title']}", ""]
            if s["intro"]:
                lines += [s["intro"], ""]
            if s["rows"]:
                lines += ["| " + " | ".join(s["columns"]) + " |", "|" + "---|" * len(s["columns"])]
                for r in s["rows"]:
                    lines.append("| " + " | ".join(_cell(r.get(c, "")) for c in s["columns"]) + " |")
            for note in s["notes"]:
                lines += ["", note]
        return "\n".join(lines) + "\n"

    def write(self) -> None:
        text = self.text()
        for path in self.paths:
            path.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(path) as temporary:        # a run cut short never leaves half a table
                temporary.write_text(text)


def _cell(value) -> str:
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"
    return str(value).replace("|", "/").replace("\n", " ")


def error_text(error: BaseException) -> str:
    last = traceback.extract_tb(error.__traceback__)[-1] if error.__traceback__ else None
    where = f" at {Path(last.filename).name}:{last.lineno}" if last else ""
    return f"ERROR {type(error).__name__}: {str(error)[:300]}{where}"


def guarded(report: Report, section: dict, label: str, function, columns_for_error: str = "status"):
    """Run ``function()``; on failure add a row with the error (and print the traceback); never raises."""
    try:
        return function()
    except BaseException as error:  # noqa: BLE001 - KeyboardInterrupt must not hide the partial report either
        if isinstance(error, KeyboardInterrupt):
            raise
        traceback.print_exc()
        Report.row(section, **{section["columns"][0]: label, columns_for_error: error_text(error)})
        return None
    finally:
        report.write()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


# ----------------------------------------------------------------------------------------------------------------
# inputs

def paper_config(quick: bool, precision: str):
    overrides = {"training.precision": precision}
    if quick:
        overrides.update({"image_size": 48, "face_model.procedural_vertex_target": 4000, "network.base_width": 8,
                          "network.regressor_width": 0.125, "parser.width": 0.125, "training.batch_size": 2})
    return get_config("paper", overrides)


def posed_views(model, camera, faces: int, generator: torch.Generator):
    """(faces * 3, V, 3) posed vertices and (faces * 3, V, 3) lit colours of random faces, views A, B, C."""
    coefficients = random_coefficients(model, faces, view_yaws(SIDE_YAW), generator, pose_jitter_radians=0.05)
    with torch.no_grad():
        vertices, albedo = model(coefficients.identity, coefficients.expression, coefficients.albedo)
        colours = shade(albedo, model.normals(vertices), coefficients.lighting)
        B, S = coefficients.angles.shape[:2]
        V = vertices.shape[1]
        posed = apply_pose(vertices.unsqueeze(1).expand(B, S, V, 3).reshape(B * S, V, 3),
                           coefficients.angles.reshape(B * S, 3), coefficients.translation.reshape(B * S, 3))
        colours = colours.unsqueeze(1).expand(B, S, V, 3).reshape(B * S, V, 3)
    return posed.contiguous(), colours.contiguous()


def synthetic_pool(model, camera, size: int, device: torch.device, chunk: int = 16, seed: int = 0) -> TripletTensors:
    """``size`` synthetic triplets (CPU uint8, as the loop preloads them), rendered on ``device`` with random
    coefficients, views at -30/0/+30 degrees with pose jitter, a random grey background per view."""
    generator = torch.Generator().manual_seed(seed)
    images, parse, lm2d, visible, lm3d = [], [], [], [], []
    H = camera.image_size
    with torch.no_grad():
        for start in range(0, size, chunk):
            B = min(chunk, size - start)
            coefficients = random_coefficients(model, B, view_yaws(SIDE_YAW), generator, pose_jitter_radians=0.05,
                                               translation_jitter_mm=3.0)
            grey = 0.2 + 0.6 * torch.rand(B * 3, 3, 1, 1, generator=generator)
            background = (grey + 0.05 * torch.randn(B * 3, 3, H, H, generator=generator)).clamp(0, 1).to(device)
            render = render_faces(model, coefficients, camera, background=background)
            images.append((render.views("image").clamp(0, 1) * 255).round().to(torch.uint8).cpu())
            parse.append(render.views("part_labels").to(torch.uint8).cpu())
            lm2d.append(render.landmarks_2d.float().cpu())
            visible.append(render.landmark_visibility().cpu())
            lm3d.append(render.vertices[:, model.landmark_101].float().cpu())
    images = torch.cat(images)
    return TripletTensors(images=images, parse_maps=torch.cat(parse), landmarks_2d=torch.cat(lm2d),
                          landmark_visibility=torch.cat(visible),
                          view_present=torch.ones(images.shape[:2], dtype=torch.bool), landmarks_3d=torch.cat(lm3d))


# ----------------------------------------------------------------------------------------------------------------
# 1. renderer

RASTERISER_NOTE = (
    "What a GPU rasteriser of ours would need to reach the goal: the torch backend expands every triangle into the "
    "pixel centres of its bounding box (float64 edge functions and depths for all candidates), reduces packed "
    "(depth, id) keys with scatter_reduce(amin) and synchronises with the host to size its chunks; it is memory-"
    "bound on the candidate tensors and launches dozens of kernels per chunk. A custom kernel (Triton or CUDA, as "
    "pytorch3d's and nvdiffrast's) would bin triangles into screen tiles (e.g. 16x16 px) in a coarse pass, then "
    "rasterise each tile in one thread block with a z-buffer in shared memory, in float32 edge functions with the "
    "same tie rule (smaller id wins on equal float32 depth), with fixed-capacity bins and no host synchronisation; "
    "interpolation (barycentrics, depth, colours, labels) fused into the same or a second kernel, and an analytic "
    "backward that scatter-adds pixel gradients into the vertices with atomics (as the numba CPU backend already "
    "does). The interpolation part in the table shows what the torch autograd shading costs besides rasterising.")


def bench_renderer(report: Report, args, device: torch.device, budget: Budget, model, camera) -> None:
    views = 12
    V, F = model.mean_shape.shape[0], model.triangles.shape[0]
    section = report.section(
        "Renderer: forward + backward", ["backend", "part", "views", "px", "vertices", "triangles", "median ms",
                                         "min ms", "n", "status"],
        intro=f"{views} views ({views // 3} faces x views A/B/C at -30/0/+30 deg), {camera.image_size} px, the "
              f"profile's procedural face ({V} vertices, {F} triangles). Goal for ours: <= {RENDER_GOAL_MS:g} ms "
              "forward + backward on the H200. Backward of 'image.square().mean() + 1e-3 * depth.mean()' w.r.t. "
              "vertices and colours.")
    generator = torch.Generator().manual_seed(1)
    posed, colours = posed_views(model, camera, views // 3, generator)
    triangles, labels = model.triangles, model.part_labels
    common = dict(views=views, px=camera.image_size, vertices=V, triangles=F)
    results = {}

    def forward_backward(backend):
        def run():
            v = posed.detach().requires_grad_(True)
            c = colours.detach().requires_grad_(True)
            out = render_views(v, triangles, c, camera, vertex_labels=labels, background=(0.5, 0.5, 0.5),
                               backend=backend)
            (out.image.square().mean() + 1e-3 * out.depth.mean()).backward()
        return run

    def forward(backend):
        def run():
            with torch.no_grad():
                render_views(posed, triangles, colours, camera, vertex_labels=labels, background=(0.5, 0.5, 0.5),
                             backend=backend)
        return run

    screen = screen_vertices(posed, camera)
    triangle_ids = rasterize_torch(screen, triangles, camera.image_size)
    coverage = float((triangle_ids >= 0).float().mean())

    def interpolation():
        s = screen.detach().requires_grad_(True)
        c = colours.detach().requires_grad_(True)
        image, depth, *_ = interpolate_torch(s, c, triangles, triangle_ids, labels, None)
        (image.square().mean() + 1e-3 * depth.mean()).backward()

    parts = [("torch", "forward + backward", forward_backward("torch")),
             ("torch", "forward (no grad)", forward("torch")),
             ("torch", "rasterise only (rasterize_torch)", lambda: rasterize_torch(screen, triangles,
                                                                                  camera.image_size)),
             ("torch", "interpolate + backward only", interpolation)]
    use_pytorch3d = pytorch3d_available() and device.type == "cuda"
    if use_pytorch3d:
        parts += [("pytorch3d", "forward + backward", forward_backward("pytorch3d")),
                  ("pytorch3d", "forward (no grad)", forward("pytorch3d"))]
    else:
        why = "skipped on CPU (seconds per call)" if pytorch3d_available() else "not importable: skipped"
        Report.row(section, backend="pytorch3d", part="-", status=why, **common)
    for backend, part, function in parts:
        if budget.left() < 5:
            Report.row(section, backend=backend, part=part, status="skipped: time budget", **common)
            continue

        def one(backend=backend, part=part, function=function):
            timing = measure(function, device, budget, warmup=1 if args.quick else 3,
                             repeats=3 if args.quick else 20, cap_s=15)
            results[(backend, part)] = timing["median_ms"]
            Report.row(section, backend=backend, part=part, **common, **{"median ms": timing["median_ms"],
                       "min ms": timing["min_ms"], "n": timing["n"], "status": "ok"})
        guarded(report, section, backend, one)
    section["notes"].append(f"Coverage: {coverage:.1%} of the pixels of the 12 views are covered by the face.")
    if use_pytorch3d:
        def agreement():
            with torch.no_grad():
                ours = render_views(posed, triangles, colours, camera, backend="torch").triangle_ids
                theirs = render_views(posed, triangles, colours, camera, backend="pytorch3d").triangle_ids
            section["notes"].append(f"Triangle ids equal to pytorch3d's on {float((ours == theirs).float().mean()):.4%}"
                                    " of the pixels.")
        guarded(report, section, "pytorch3d agreement", agreement)
    ours = results.get(("torch", "forward + backward"))
    if ours is not None and device.type == "cuda":
        verdict = "meets" if ours <= RENDER_GOAL_MS else f"misses ({ours / RENDER_GOAL_MS:.1f}x the goal)"
        section["notes"].append(f"Ours forward + backward: {ours:.2f} ms, {verdict} the {RENDER_GOAL_MS:g} ms goal.")
        if ours > 2 * RENDER_GOAL_MS:
            section["notes"].append(RASTERISER_NOTE)
    report.write()


# ----------------------------------------------------------------------------------------------------------------
# 2. inference

def bench_inference(report: Report, args, device: torch.device, budget: Budget, config, model, camera) -> None:
    size = config.image_size
    section = report.section(
        "Network inference per triplet", ["mode", "batch", "median ms per batch", "ms per triplet", "min ms per batch",
                                          "n", "status"],
        intro=f"The {config.profile} profile's network ({config.network.backbone} base width "
              f"{config.network.base_width} + {config.network.regressor} width {config.network.regressor_width}), "
              f"{size} px, 3 views, random weights and inputs, eval mode, no gradient. The paper: "
              f"{PAPER_INFERENCE_MS:g} ms per triplet on an RTX 3090; goal <= {INFERENCE_GOAL_MS:g} ms at batch 1.")
    network = build_network(config).to(device).eval()
    generator = torch.Generator().manual_seed(2)

    def inputs(batch):
        images = torch.rand(batch, 3, 3, size, size, generator=generator).to(device)
        parse = torch.randint(0, 10, (batch, 3, size, size), generator=generator).to(device)
        return images, parse

    def timed(mode, batch, function, warmup=3, repeats=20):
        timing = measure(function, device, budget, warmup=1 if args.quick else warmup,
                         repeats=3 if args.quick else repeats, cap_s=12)
        Report.row(section, mode=mode, batch=batch, **{"median ms per batch": timing["median_ms"],
                   "ms per triplet": timing["median_ms"] / batch, "min ms per batch": timing["min_ms"],
                   "n": timing["n"], "status": "ok"})
        if batch == 1 and "render" not in mode:
            batch_one[mode] = timing["median_ms"]
        return timing["median_ms"] / batch

    batch_one: dict[str, float] = {}

    images1, parse1 = inputs(1)
    bf16 = "bf16" if device.type == "cuda" or args.quick else "fp32"

    def plain(precision, net=network, images=images1, parse=parse1):
        def run():
            with torch.no_grad(), autocast(precision, device.type):
                net(images, parse)
        return run

    guarded(report, section, "fp32", lambda: timed("fp32 (torch defaults: TF32 convolutions on GPUs)", 1,
                                                  plain("fp32")))
    if device.type == "cuda":
        guarded(report, section, "bf16", lambda: timed("bf16 autocast", 1, plain("bf16")))

        def channels_last():
            net = build_network(config).to(device).eval().to(memory_format=torch.channels_last)
            timed("bf16 autocast + channels_last", 1, plain("bf16", net))
        guarded(report, section, "bf16 + channels_last", channels_last)

        def graphed():
            static_images, static_parse = images1.clone(), parse1.clone()
            stream = torch.cuda.Stream()
            stream.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(stream), torch.no_grad():
                for _ in range(3):
                    with torch.autocast("cuda", dtype=torch.bfloat16, cache_enabled=False):
                        network(static_images, static_parse)
            torch.cuda.current_stream().wait_stream(stream)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph), torch.no_grad():
                with torch.autocast("cuda", dtype=torch.bfloat16, cache_enabled=False):
                    network(static_images, static_parse)
            timed("bf16 autocast + CUDA graph", 1, graph.replay)
        guarded(report, section, "bf16 + CUDA graph", graphed)

    def with_render():
        def run():
            with torch.no_grad():
                reconstruct(network, model, camera, images1, parse1, precision=bf16, backend="auto")
        timed(f"{bf16} network + render (reconstruct)", 1, run)
    guarded(report, section, "network + render", with_render)

    best = None
    batches = [1, 2, 4] if args.quick else [2, 4, 8, 16, 32, 64, 128]
    worse = 0
    for batch in batches:
        if budget.left() < 20 + args.reserve_s:
            Report.row(section, mode=f"{bf16} sweep", batch=batch, status="skipped: time budget")
            break

        def one(batch=batch):
            images, parse = inputs(batch)
            return timed(f"{bf16} sweep", batch, plain(bf16, network, images, parse), warmup=2, repeats=8)
        per_triplet = guarded(report, section, f"{bf16} sweep", one)
        if per_triplet is None:
            break                                           # out of memory or another failure: larger fails too
        if best is None or per_triplet < best[1]:
            best, worse = (batch, per_triplet), 0
        else:
            worse += 1
            if worse >= 2:
                break
    if best is not None:
        section["notes"].append(f"Best batch of the {bf16} sweep: {best[0]} ({best[1]:.3g} ms per triplet).")
    if batch_one and device.type == "cuda":
        mode, ms = min(batch_one.items(), key=lambda item: item[1])
        verdict = "meets" if ms <= INFERENCE_GOAL_MS else f"misses ({ms / INFERENCE_GOAL_MS:.1f}x)"
        section["notes"].append(f"Fastest network at batch 1: {mode}, {ms:.3g} ms per triplet: {verdict} the "
                                f"{INFERENCE_GOAL_MS:g} ms goal; {PAPER_INFERENCE_MS / ms:.1f}x faster than the "
                                f"paper's {PAPER_INFERENCE_MS:g} ms (RTX 3090).")
    report.write()


# ----------------------------------------------------------------------------------------------------------------
# 3 + 4. training

class Trainer:
    """The loop's step (dfmvr_lib.training.loop.train_reconstruction) without its bookkeeping."""

    def __init__(self, config, model, camera, device, data: TripletTensors):
        self.config, self.model, self.camera, self.device = config, model, camera, device
        self.network = build_network(config).to(device)
        if config.training.channels_last:
            self.network = self.network.to(memory_format=torch.channels_last)
        self.network.train()
        self.parser = frozen_parser(build_parser(config.parser)).to(device)
        self.optimiser = torch.optim.Adam(self.network.parameters(), lr=config.training.learning_rate)
        self.precision = config.training.precision
        self.data = with_landmark_noise(data, config.training.landmark_noise_nme)

    def batch(self, step: int):
        training = self.config.training
        indices = batch_indices(len(self.data), training.batch_size, step, self.config.seed)
        return make_batch(self.data, indices, step_generator(self.config.seed, step),
                          colour_augment=training.colour_augment, single_view_mode=training.single_view_mode,
                          device=self.device)

    def step(self, batch, mask_active: bool = True, clock=None):
        clock = clock or (lambda name, function: function())
        prediction = clock("network + render forward", lambda: reconstruct(
            self.network, self.model, self.camera, batch.network_images, batch.network_parse_maps,
            precision=self.precision))
        terms = clock("losses", lambda: batch_loss(self.config.losses, prediction, batch, self.model, self.parser,
                                                   mask_active=mask_active, camera=self.camera))
        self.optimiser.zero_grad(set_to_none=True)
        clock("backward", lambda: terms.total.backward())
        clock("optimiser step", self.optimiser.step)
        return terms


def bench_training(report: Report, args, device: torch.device, budget: Budget, config, model, camera) -> None:
    training = config.training
    section = report.section(
        "Training step (paper profile)", ["part", "median ms", "min ms", "n", "status"],
        intro=f"Batch {training.batch_size} triplets, {config.image_size} px, precision {training.precision} "
              "(network under autocast; renderer and losses float32), Adam; the paper's loss with the mask loss "
              "(frozen BiSeNet of width {config.parser.width}, random weights). Parts timed with a synchronisation "
              "between them; 'whole step' without ('batch assembly' excluded: CPU uint8 -> float, colour jitter, "
              "copy to the device).".replace("{config.parser.width}", str(config.parser.width)))
    run_section = report.section(
        f"Training run: {args.steps} paper-profile steps", ["what", "value", "status"],
        intro="A fresh network trained on a pool of synthetic triplets rendered on the fly on the device "
              "(random_coefficients + render_faces); the loss must fall.")
    state = {}

    def prepare():
        began = time.monotonic()
        pool = max(args.pool, training.batch_size)
        data = synthetic_pool(model, camera, pool, device)
        Report.row(section, part=f"render the pool of {pool} triplets (once)",
                   **{"median ms": (time.monotonic() - began) * 1e3, "n": 1, "status": "ok"})
        state["data"] = data
        state["trainer"] = Trainer(config, model, camera, device, data)
    guarded(report, section, "prepare", prepare)
    trainer = state.get("trainer")
    if trainer is None:
        Report.row(run_section, what="run", status="not run: the preparation failed")
        report.write()
        return

    def parts():
        batch = trainer.batch(0)
        laps: dict[str, list[float]] = {}

        def clock(name, function):
            synchronize(device)
            began = time.perf_counter()
            value = function()
            synchronize(device)
            laps.setdefault(name, []).append((time.perf_counter() - began) * 1e3)
            return value
        repeats = 1 if args.quick else 6
        stop = min(time.monotonic() + 40, budget.deadline)
        for repeat in range(repeats + 1):
            clock("batch assembly (make_batch)", lambda: trainer.batch(repeat))
            trainer.step(batch, clock=clock)
            if repeat == 0:
                laps.clear()                               # warm-up (cuDNN autotuning, allocator)
            if repeat and time.monotonic() > stop:
                break
        for name, values in laps.items():
            Report.row(section, part=name, **{"median ms": statistics.median(values), "min ms": min(values),
                                              "n": len(values), "status": "ok"})
        whole = measure(lambda: trainer.step(batch), device, budget, warmup=1, repeats=2 if args.quick else 10,
                        cap_s=30)
        Report.row(section, part="whole step", **{"median ms": whole["median_ms"], "min ms": whole["min_ms"],
                                                   "n": whole["n"], "status": "ok"})
        if device.type == "cuda":
            section["notes"].append(f"Peak GPU memory allocated so far: "
                                    f"{torch.cuda.max_memory_allocated(device) / 2**30:.1f} GiB.")
        return whole["median_ms"]
    step_ms = guarded(report, section, "step", parts)

    # a fresh network for the run (the timing steps above trained the first one on one batch)
    def run():
        runner = Trainer(config, model, camera, device, state["data"])
        steps = args.steps
        if step_ms:
            affordable = int((budget.left() - 10) / (1.3 * step_ms / 1e3 + 0.01))
            if affordable < steps:
                steps = max(affordable, 0)
                run_section["notes"].append(f"Reduced from {args.steps} to {steps} steps to fit the time budget.")
        least = 6 if args.quick else 40
        if steps < least:
            raise RuntimeError(f"only {steps} steps fit in the time budget (need >= {least} for two means)")
        mask_start = int(round(config.losses.mask_start_fraction * steps))
        totals, photos, landmarks = [], [], []
        synchronize(device)
        began = time.perf_counter()
        for step in range(steps):
            batch = runner.batch(step)
            terms = runner.step(batch, mask_active=step >= mask_start)
            totals.append(terms.total.detach())
            photos.append(terms.photo.detach())
            landmarks.append(terms.landmark_2d.detach())
            if budget.left() < 2:
                run_section["notes"].append(f"Stopped at step {step + 1}: time budget.")
                break
        synchronize(device)
        seconds = time.perf_counter() - began
        total = torch.stack(totals).float().cpu()
        if not torch.isfinite(total).all():
            raise FloatingPointError(f"non-finite loss at step {int((~torch.isfinite(total)).nonzero()[0]) + 1}")
        done = total.numel()
        window = 20 if done >= 40 else max(done // 2, 1)
        first, last = float(total[:window].mean()), float(total[-window:].mean())
        photo, landmark = torch.stack(photos).float().cpu(), torch.stack(landmarks).float().cpu()
        rows = [("steps", done), ("batch triplets", training.batch_size), ("pool triplets", len(runner.data)),
                ("wall seconds (batch assembly included)", seconds), ("ms per step", seconds * 1e3 / done),
                (f"loss: first {window}-step mean", first), (f"loss: last {window}-step mean", last),
                ("loss: last / first", last / first),
                (f"photo term: first / last {window}-step mean",
                 f"{float(photo[:window].mean()):.4g} / {float(photo[-window:].mean()):.4g}"),
                (f"2D landmark term: first / last {window}-step mean",
                 f"{float(landmark[:window].mean()):.4g} / {float(landmark[-window:].mean()):.4g}")]
        for what, value in rows:
            Report.row(run_section, what=what, value=value, status="ok")
        verdict = "PASS: the loss falls" if last < first else "FAIL: the loss does not fall"
        Report.row(run_section, what="loss falls", value=f"{first:.4g} -> {last:.4g}", status=verdict)
    if budget.left() < 20:
        Report.row(run_section, what="run", status="skipped: time budget")
    else:
        guarded(report, run_section, "run", run)
    report.write()


# ----------------------------------------------------------------------------------------------------------------

def environment_lines(device: torch.device, args, budget_s: float) -> list[str]:
    if device.type == "cuda":
        properties = torch.cuda.get_device_properties(device)
        name = (f"{properties.name}, {properties.total_memory / 2**30:.0f} GiB, {properties.multi_processor_count} SMs,"
                f" compute capability {properties.major}.{properties.minor}")
    else:
        name = f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"
    try:
        from dfmvr_lib.provenance import git_commit
        commit = git_commit()
    except Exception:  # noqa: BLE001
        commit = "unknown"
    cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    title = "GPU benchmark of the paper profile" + (" (CPU DRY RUN: not GPU figures)" if device.type == "cpu" else "")
    if args.quick:
        title += " (QUICK mode: tiny mesh, widths and steps, not the paper profile's sizes)"
    return [f"# {title}", "",
            "Written by `benchmarks/bench_gpu.py` (run through `benchmarks/gpu_check.sh`).", "",
            f"- date: {datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}",
            f"- device: {name}",
            f"- torch {torch.__version__}, CUDA {torch.version.cuda}, cuDNN {cudnn}, "
            f"Python {platform.python_version()}",
            f"- {NUMBA_NOTE}; pytorch3d importable: {pytorch3d_available()}",
            f"- commit: {commit}; time budget {budget_s:.0f} s"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--quick", action="store_true", help="tiny sizes for a CPU dry run")
    parser.add_argument("--budget-s", type=float, default=None,
                        help="total seconds for all measurements (default 330; 80 with --quick)")
    parser.add_argument("--reserve-s", type=float, default=None,
                        help="seconds the inference sweep leaves for the training parts (default 180; 40 --quick)")
    parser.add_argument("--steps", type=int, default=None, help="training-run steps (default 200; 12 with --quick)")
    parser.add_argument("--pool", type=int, default=None, help="synthetic triplets to train on (default 128; 8)")
    parser.add_argument("--out", type=Path, default=None,
                        help="markdown path (default results/benchmarks/gpu.md on a GPU; a temp file with --quick "
                             "or on CPU)")
    parser.add_argument("--parts", default="renderer,inference,training")
    args = parser.parse_args()
    args.budget_s = args.budget_s or (80.0 if args.quick else 330.0)
    args.reserve_s = args.reserve_s if args.reserve_s is not None else (40.0 if args.quick else 180.0)
    args.steps = args.steps or (12 if args.quick else 200)
    args.pool = args.pool or (8 if args.quick else 128)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("bench_gpu: CUDA is not available", file=sys.stderr)
        return 2
    budget = Budget(args.budget_s)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    else:
        torch.set_num_threads(min(torch.get_num_threads(), 2))
    if args.out is None:
        args.out = (ROOT / "results" / "benchmarks" / "gpu.md" if device.type == "cuda" and not args.quick
                    else Path(tempfile.gettempdir()) / "dfmvr_gpu_dry_run.md")
    paths = [args.out]
    if os.environ.get("OUT"):
        paths.append(Path(os.environ["OUT"]) / args.out.name)
    report = Report(paths, environment_lines(device, args, args.budget_s))
    report.write()
    wanted = set(args.parts.split(","))

    setup = report.section("Set-up", ["what", "seconds", "status"])
    state = {}

    def build(config_key, precision):
        began = time.monotonic()
        config = paper_config(args.quick, precision)
        model = load_face_model(config.face_model).to(device)
        camera = PerspectiveCamera.from_config(config)
        state[config_key] = (config, model, camera)
        Report.row(setup, what=f"face model ({model.mean_shape.shape[0]} vertices) + camera",
                   seconds=time.monotonic() - began, status="ok")
    guarded(report, setup, "face model", lambda: build("paper", "bf16" if device.type == "cuda" or args.quick
                                                       else "fp32"))
    if "paper" not in state:
        print(report.text())
        return 1
    config, model, camera = state["paper"]
    if "renderer" in wanted:
        guarded(report, setup, "renderer", lambda: bench_renderer(report, args, device, budget, model, camera))
    if "inference" in wanted:
        guarded(report, setup, "inference",
                lambda: bench_inference(report, args, device, budget, config, model, camera))
    if "training" in wanted:
        guarded(report, setup, "training", lambda: bench_training(report, args, device, budget, config, model, camera))
    Report.row(setup, what="all parts (measurements)", seconds=budget.elapsed(), status="ok")
    report.write()
    print(report.text())
    print(f"bench_gpu: wrote {', '.join(str(p) for p in paths)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
