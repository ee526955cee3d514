"""Write the workbook's notebooks from their cell lists (keeps them small, reviewed as code, and consistent).

    python tools/build_notebooks.py            # rewrites notebooks/*.ipynb

Each notebook: a title, one cell tagged ``parameters`` (``profile``, ``results_dir``), then markdown + short code
cells that only call dfmvr_lib.
"""
from __future__ import annotations

from pathlib import Path

import nbformat

NOTEBOOK_DIR = Path(__file__).resolve().parents[1] / "notebooks"


def markdown(text: str):
    return nbformat.v4.new_markdown_cell(text.strip())


def code(text: str, tags: tuple[str, ...] = ()):
    cell = nbformat.v4.new_code_cell(text.strip())
    if tags:
        cell.metadata["tags"] = list(tags)
    return cell


def parameters(extra: str = ""):
    return code('profile = "cpu"          # smoke | cpu | paper\nresults_dir = "../results"\n' + extra,
                tags=("parameters",))


NOTEBOOK_00 = [
    markdown("""
# 00 — Face model and renderer

The 3D face core of the workbook: the morphable model (here the embedded procedural one unless the configuration
names a BFM09 file), pose and camera, spherical-harmonics lighting and the differentiable renderer.
Conventions (axes, units, pixels) are in `docs/conventions.md`.
"""),
    parameters(),
    code("""
import math
from pathlib import Path

import torch

from dfmvr_lib import plots
from dfmvr_lib.camera import PerspectiveCamera, view_yaws
from dfmvr_lib.config import get_config
from dfmvr_lib.environment import environment_report
from dfmvr_lib.face_model import load_face_model, measurement_table
from dfmvr_lib.provenance import write_table
from dfmvr_lib.scene import FaceCoefficients, random_coefficients, render_faces

config = get_config(profile)
figures = Path(results_dir) / "figures"
tables = Path(results_dir) / "tables"
torch.manual_seed(config.seed)
"""),
    markdown("## Environment\nVersions, threads and which optional backends import on this machine."),
    code("environment_report()"),
    markdown("""
## The face model
Vertices, triangles and numbers of identity / expression / albedo components, then the mean face's proportions
(millimetres, measured between its 68 landmark vertices) next to adult anthropometric norms and, for scale, the same
landmark distances on the BFM09 mean face.
"""),
    code("""
model = load_face_model(config.face_model)
camera = PerspectiveCamera.from_config(config)
model
"""),
    code("""
measurements = measurement_table(model.mean_shape, model.landmark_68)
write_table(measurements, tables / "00_mean_face_measurements.csv", config)
measurements.round(1)
"""),
    markdown("""
## The mean face in the three views
Views A (left), B (front), C (right) at the profile's side yaw, plain lighting. Below each render: the 68
projected landmarks and the part-label map that the renderer produces from the per-vertex labels.
"""),
    code("""
yaws = view_yaws(math.radians(config.data.side_yaw_degrees))
mean_face = render_faces(model, FaceCoefficients.neutral(model, yaws=yaws), camera, background=(0.35, 0.37, 0.42))
figure = plots.render_overlay_figure(mean_face, sample=0)
plots.save_figure(figure, figures / "00_mean_face_views.png")
"""),
    markdown("""
## Random identities, expressions and albedos
Twelve faces with identity, expression and albedo coefficients drawn from N(0, 1), each at -45, 0 and +45 degrees,
rendered at 224 px whatever the profile.
"""),
    code("""
figure = plots.random_faces_figure(model, n_faces=12, yaws_degrees=(-45, 0, 45), image_size=224, seed=config.seed)
plots.save_figure(figure, figures / "00_random_faces.png")
"""),
    markdown("""
## Landmark and part-label overlays on random faces
Random faces with random lighting and small pose jitter, as the synthetic benchmark will make them.
"""),
    code("""
generator = torch.Generator().manual_seed(config.seed)
coefficients = random_coefficients(model, 3, yaws, generator, pose_jitter_radians=0.03)
faces = render_faces(model, coefficients, camera, background=(0.35, 0.37, 0.42))
for sample in range(3):
    figure = plots.render_overlay_figure(faces, sample=sample)
    plots.save_figure(figure, figures / f"00_random_face_overlays_{sample}.png")
"""),
    markdown("""
## Gradients through the renderer
The renderer is differentiable with respect to vertex positions and colours: a photometric loss between a render
and a target render of a different identity gives non-zero gradients on the identity coefficients.
"""),
    code("""
target = render_faces(model, coefficients, camera).render.image.detach()
start = FaceCoefficients.neutral(model, batch_size=3, yaws=yaws)
start.lighting, start.angles = coefficients.lighting, coefficients.angles
start.identity.requires_grad_(True)
loss = (render_faces(model, start, camera).render.image - target).abs().mean()
loss.backward()
print(f"photometric loss {loss.item():.4f}; identity gradient norm {start.identity.grad.norm():.3e}")
"""),
]

NOTEBOOKS = {"00_face_model_and_renderer.ipynb": NOTEBOOK_00}


def build() -> None:
    NOTEBOOK_DIR.mkdir(exist_ok=True)
    for name, cells in NOTEBOOKS.items():
        notebook = nbformat.v4.new_notebook(cells=cells)
        notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        notebook.metadata["language_info"] = {"name": "python"}
        nbformat.write(notebook, NOTEBOOK_DIR / name)
        print("wrote", NOTEBOOK_DIR / name)


if __name__ == "__main__":
    build()
