"""Benchmark of the differentiable renderer: forward and forward+backward time of ``render_views``.

12 views at yaws spread over -45..45 degrees, a ~35k-vertex / ~70k-triangle mesh, 2 threads (torch and numba),
112 and 224 pixels, backends ``numba`` (the CPU default) and ``torch``. The mesh is the procedural face model when
``dfmvr_lib.face_model.procedural.build_procedural_model`` is available, else a dense bumpy UV ellipsoid covering
about half of the image (the CSV records which).

Usage: ``.venv/bin/python benchmarks/bench_renderer.py [--repeats 10] [--threads 2] [--csv PATH]``.
Prints a table and writes ``results/benchmarks/renderer.csv`` (+ ``renderer.md``).
"""
from __future__ import annotations

import argparse
import csv
import datetime
import math
import sys
from pathlib import Path

import numba
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from timing import time_ms  # noqa: E402
from dfmvr_lib.provenance import atomic_path, git_commit, write_text  # noqa: E402
from dfmvr_lib.camera import PerspectiveCamera, apply_pose  # noqa: E402
from dfmvr_lib.render import render_views  # noqa: E402


def ellipsoid_mesh(target_vertices: int = 35000, radii=(75.0, 100.0, 60.0)):
    """A closed UV ellipsoid with bumps, ~``target_vertices`` vertices, centred at the origin (mm).

    Returns ``(vertices (V,3) float32, triangles (F,3) long, labels (V,) long)``; triangles counter-clockwise seen
    from outside.
    """
    n_lat = int(round(math.sqrt(target_vertices / 1.6)))
    n_lon = int(round(target_vertices / n_lat))
    theta = torch.linspace(0.0, math.pi, n_lat + 2, dtype=torch.float64)[1:-1]  # excludes the poles
    phi = torch.arange(n_lon, dtype=torch.float64) * (2.0 * math.pi / n_lon)
    t, p = torch.meshgrid(theta, phi, indexing="ij")
    direction = torch.stack([torch.sin(t) * torch.sin(p), torch.cos(t), torch.sin(t) * torch.cos(p)], -1)
    nose = torch.exp(-(p ** 2 + (t - math.pi / 2) ** 2) / 0.02)
    bump = 1.0 + 0.04 * torch.sin(5 * p) * torch.sin(4 * t) + 0.25 * nose
    points = direction * torch.tensor(radii, dtype=torch.float64) * bump.unsqueeze(-1)
    points = torch.cat([points.reshape(-1, 3), torch.tensor([[0.0, radii[1], 0.0], [0.0, -radii[1], 0.0]],
                                                            dtype=torch.float64)])
    grid = torch.arange(n_lat * n_lon).reshape(n_lat, n_lon)
    right = torch.roll(grid, -1, dims=1)
    a, b, c, d = grid[:-1], right[:-1], grid[1:], right[1:]
    quads = torch.cat([torch.stack([a, c, b], -1).reshape(-1, 3), torch.stack([b, c, d], -1).reshape(-1, 3)])
    top, bottom = n_lat * n_lon, n_lat * n_lon + 1
    caps = torch.cat([torch.stack([torch.full_like(grid[0], top), grid[0], right[0]], -1),
                      torch.stack([torch.full_like(grid[-1], bottom), right[-1], grid[-1]], -1)])
    triangles = torch.cat([quads, caps]).long()
    labels = (torch.arange(points.shape[0]) * 7 // 13) % 10
    return (points - points.mean(0)).float(), triangles, labels.long()


def benchmark_mesh(target_vertices: int = 35000):
    """(vertices, triangles, labels, colours (V,3), description) for the benchmark."""
    try:
        from dfmvr_lib.face_model.procedural import build_procedural_model  # type: ignore
        from dfmvr_lib.lighting import shade
        model = build_procedural_model(target_vertices)
        with torch.no_grad():
            vertices, albedo = model()
            colours = shade(albedo, model.normals(vertices), torch.zeros(1, 27))
        return (vertices[0].float(), model.triangles, model.part_labels, colours[0].float(),
                f"procedural face model ({model.name})")
    except Exception as error:  # noqa: BLE001 - any failure falls back to the synthetic mesh
        reason = type(error).__name__
    vertices, triangles, labels = ellipsoid_mesh(target_vertices)
    generator = torch.Generator().manual_seed(0)
    colours = (0.5 + 0.5 * torch.sin(vertices / 17.0 + torch.rand(3, generator=generator) * 6)).float()
    return vertices, triangles, labels, colours, f"bumpy UV ellipsoid (procedural model unavailable: {reason})"


def posed_views(vertices: torch.Tensor, views: int = 12) -> torch.Tensor:
    yaws = torch.linspace(-math.pi / 4, math.pi / 4, views)
    angles = torch.stack([torch.full_like(yaws, 0.05), yaws, torch.zeros_like(yaws)], -1)
    return apply_pose(vertices.unsqueeze(0).expand(views, -1, -1), angles, torch.zeros(views, 3))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--views", type=int, default=12)
    parser.add_argument("--sizes", type=int, nargs="+", default=[112, 224])
    parser.add_argument("--backends", nargs="+", default=["numba", "torch"])
    parser.add_argument("--csv", type=Path, default=ROOT / "results" / "benchmarks" / "renderer.csv")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    numba.set_num_threads(min(args.threads, numba.config.NUMBA_NUM_THREADS))
    commit, date = git_commit(), datetime.date.today().isoformat()
    vertices, triangles, labels, colours, mesh_name = benchmark_mesh()
    posed = posed_views(vertices, args.views)
    view_colours = colours.unsqueeze(0).expand(args.views, -1, -1).contiguous()
    rows = []
    for backend in args.backends:
        for size in args.sizes:
            camera = PerspectiveCamera.for_image_size(size)

            def forward():
                with torch.no_grad():
                    return render_views(posed, triangles, view_colours, camera, vertex_labels=labels,
                                        backend=backend)

            def forward_backward():
                v = posed.detach().requires_grad_(True)
                c = view_colours.detach().requires_grad_(True)
                out = render_views(v, triangles, c, camera, vertex_labels=labels, background=(0.2, 0.3, 0.4),
                                   backend=backend)
                loss = (out.image - 0.5).square().mean() + 1e-3 * out.depth.mean()
                loss.backward()
                return v.grad, c.grad

            coverage = float(forward().alpha.mean())
            forward_ms, forward_min = time_ms(forward, args.repeats)
            forward_backward_ms, forward_backward_min = time_ms(forward_backward, args.repeats)
            rows.append({
                "backend": backend, "image_size": size, "views": args.views, "vertices": vertices.shape[0],
                "triangles": triangles.shape[0], "threads": args.threads,
                "forward_ms": round(forward_ms, 1), "forward_backward_ms": round(forward_backward_ms, 1),
                "date": date, "git_commit": commit, "mesh": mesh_name,
                "coverage": round(coverage, 3), "forward_min_ms": round(forward_min, 1),
                "forward_backward_min_ms": round(forward_backward_min, 1),
            })
            print(f"{backend:>6} {size:4d}px  forward {rows[-1]['forward_ms']:7.1f} ms   "
                  f"forward+backward {rows[-1]['forward_backward_ms']:7.1f} ms   coverage {coverage:.2f}", flush=True)

    with atomic_path(args.csv) as temporary, open(temporary, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    header = ("| backend | image | views | vertices | triangles | threads | forward ms | forward+backward ms "
              "| (min of runs: forward / forward+backward) |")
    lines = [f"# Renderer benchmark ({rows[0]['date']}, commit {rows[0]['git_commit']})", "",
             f"Mesh: {mesh_name}; {args.views} views at yaws -45..45 deg; median of {args.repeats} runs "
             "(minimum in the last column); CPU "
             f"({args.threads} threads for torch and numba). `forward` runs under `torch.no_grad()`; "
             "`forward+backward` renders with gradients w.r.t. vertices and colours (background RGB, part labels) "
             "and back-propagates a photometric + depth loss. Target: forward+backward <= 100 ms at 224 px with "
             "numba. Produced by `benchmarks/bench_renderer.py` with the machine otherwise idle; when other "
             "processes compete for the 2 cores, spinning OpenMP workers (numba's and torch's pools) can make single "
             "runs up to 10x slower, so rerun on a quiet machine.", "",
             header, "|" + "---|" * 9]
    for row in rows:
        lines.append(f"| {row['backend']} | {row['image_size']} | {row['views']} | {row['vertices']} | "
                     f"{row['triangles']} | {row['threads']} | {row['forward_ms']} | {row['forward_backward_ms']} | "
                     f"{row['forward_min_ms']} / {row['forward_backward_min_ms']} |")
    print("\n".join(lines[4:]))
    write_text(args.csv.with_suffix(".md"), "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
