# ---
# jupyter:
#   jupytext:
#     cell_metadata_filter: tags,-all
#     formats: ipynb,py:percent
#     notebook_metadata_filter: kernelspec,jupytext,-jupytext.text_representation.jupytext_version
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#   kernelspec:
#     display_name: Python 3 (dfmvr-workbench)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 00 — Face model and renderer
#
# The 3D face core of the workbook: the morphable model (here the embedded procedural one unless the configuration
# names a BFM09 file), pose and camera, spherical-harmonics lighting and the differentiable renderer.
# Conventions (axes, units, pixels) are in `docs/conventions.md`.

# %% tags=["parameters"]
profile = "cpu"          # smoke | cpu | paper
results_dir = "../results"

# %%
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
torch.manual_seed(config.seed)
figures = Path(results_dir) / "figures"
tables = Path(results_dir) / "tables"

# %% [markdown]
# ## Environment
# Versions, threads and which optional backends import on this machine.

# %%
environment_report()

# %% [markdown]
# ## The face model
# Vertices, triangles and numbers of identity / expression / albedo components, then the mean face's proportions
# (millimetres, measured between its 68 landmark vertices) next to adult anthropometric norms and, for scale, the same
# landmark distances on the BFM09 mean face.

# %%
model = load_face_model(config.face_model)
camera = PerspectiveCamera.from_config(config)
model

# %% [markdown]
# The mean face in 3D with its mean albedo as vertex colours: drag to turn it, scroll to zoom, hover for vertex numbers
# (a plotly widget, live in JupyterLab; `dfmvr_lib.mesh_widget`).

# %%
from dfmvr_lib.mesh_widget import reconstruction_mesh_figure

reconstruction_mesh_figure(model, FaceCoefficients.neutral(model), title="the mean face (mean albedo)")

# %%
measurements = measurement_table(model.mean_shape, model.landmark_68)
write_table(measurements, tables / "00_mean_face_measurements.csv", config)
measurements.round(1)

# %% [markdown]
# ## The mean face in the three views
# Views A (left), B (front), C (right) at the profile's side yaw, plain lighting. Below each render: the 68
# projected landmarks and the part-label map that the renderer produces from the per-vertex labels.

# %%
yaws = view_yaws(math.radians(config.data.side_yaw_degrees))
mean_face = render_faces(model, FaceCoefficients.neutral(model, yaws=yaws), camera, background=(0.35, 0.37, 0.42))
figure = plots.render_overlay_figure(mean_face, sample=0)
plots.save_figure(figure, figures / "00_mean_face_views.png")

# %% [markdown]
# ## Random identities, expressions and albedos
# Twelve faces with identity, expression and albedo coefficients drawn from N(0, 1), each at -45, 0 and +45 degrees,
# rendered at 224 px whatever the profile.

# %%
figure = plots.random_faces_figure(model, n_faces=12, yaws_degrees=(-45, 0, 45), image_size=224, seed=config.seed)
plots.save_figure(figure, figures / "00_random_faces.png")

# %% [markdown]
# ## Landmark and part-label overlays on random faces
# Random faces with random lighting and small pose jitter, as the synthetic benchmark will make them.

# %%
generator = torch.Generator().manual_seed(config.seed)
coefficients = random_coefficients(model, 3, yaws, generator, pose_jitter_radians=0.03)
faces = render_faces(model, coefficients, camera, background=(0.35, 0.37, 0.42))
for sample in range(3):
    figure = plots.render_overlay_figure(faces, sample=sample)
    plots.save_figure(figure, figures / f"00_random_face_overlays_{sample}.png")

# %% [markdown]
# ## Gradients through the renderer
# The renderer is differentiable with respect to vertex positions and colours: a photometric loss between a render
# and a target render of a different identity gives non-zero gradients on the identity coefficients.

# %%
target = render_faces(model, coefficients, camera).render.image.detach()
start = FaceCoefficients.neutral(model, batch_size=3, yaws=yaws)
start.lighting, start.angles = coefficients.lighting, coefficients.angles
start.identity.requires_grad_(True)
loss = (render_faces(model, start, camera).render.image - target).abs().mean()
loss.backward()
print(f"photometric loss {loss.item():.4f}; identity gradient norm {start.identity.grad.norm():.3e}")
