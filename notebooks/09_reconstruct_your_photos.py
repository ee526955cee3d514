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
# # 09 — Reconstruct your own photos
#
# The trained DF-MVR network of notebook 03 applied to photos. Each photo is prepared as in notebook 01 (68 landmarks,
# crop aligned to the face model's framing at the network's image size) and labelled by the frozen face parser of
# notebook 02 (the network's mask input); the network predicts the face and a pose per view; then a short **multi-view
# test-time refinement** fits the coefficients and poses to the photos (photo loss, 2D landmarks all of one weight
# without the jaw line, a tenth of the training's coefficient prior, the albedo within +-3 sd; no 3D landmarks, which
# need ground truth, and no mask loss: on real photos the parser, trained on synthetic renders, pulled the shape away;
# the choice of these weights is measured in `dfmvr_lib/reconstruction/fitting.py`). Views that are not given are
# black with empty masks, as in single-view training. The same pipeline is the command
# `dfmvr reconstruct LEFT FRONT RIGHT -o face.obj [--refine]` (see `dfmvr reconstruct --help`).
#
# First a synthetic test triplet, whose ground truth gives the error before and after refinement and per-region error
# maps; then your photos (`photos_dir`; skipped when the folder is absent), with widgets to pick a triplet, to turn the
# reconstructed face and to move its first identity and expression components.

# %% tags=["parameters"]
profile = "cpu"          # smoke | cpu | paper
results_dir = "../results"
data_dir = "../data"         # generated datasets and training runs (git-ignored)
photos_dir = "../../shared/fixtures/real_multiview"   # a folder of photo triplets (skipped when absent)
show_photos = None           # show the photos here and write their results under results_dir; None: yes, except
                             # for the development fixtures (../shared), which may not be published
checkpoint = None            # a finished reconstruction run directory; None: this profile's run of notebook 03
refine_steps = None          # None: the command's default (40); 5 in the smoke profile
ground_truth_mesh = None     # optional PLY (mm) of the photographed face, for an error map
ground_truth_landmarks = None   # its 7 alignment points (text file, 7 x 3 mm) unless it has the model's topology

# %%
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
import torch
from IPython.display import display

from dfmvr_lib import plots, workbook
from dfmvr_lib.config import get_config
from dfmvr_lib.evaluation import region_errors_table
from dfmvr_lib.experiments import error_map_figure, evaluate_with_regions, load_synthetic_test_set
from dfmvr_lib.provenance import results_paths, write_table
from dfmvr_lib.runs import run_columns
from dfmvr_lib.reconstruction import (DEFAULT_REFINE_STEPS, load_reconstructor, overlay_figure, reconstruct_triplet,
                                      save_reconstruction)
from dfmvr_lib.training import make_batch
from dfmvr_lib.training.landmark_noise import with_landmark_noise

figures, tables = results_paths(results_dir)
steps = refine_steps if refine_steps is not None else (5 if profile == "smoke" else DEFAULT_REFINE_STEPS)
if checkpoint is None:       # notebook 03's run of this profile: reused when finished, trained otherwise
    checkpoint = workbook.notebook_03_run(get_config(profile), data_dir).run_dir
reconstructor = load_reconstructor(checkpoint)
config, model = reconstructor.config, reconstructor.model
trained_by = run_columns([reconstructor.run_dir])      # every table row names the run it came from
root = workbook.benchmark(config, data_dir)
print(f"run {reconstructor.run_dir} ({config.profile} profile, {config.image_size} px), parser "
      f"{reconstructor.parser_run_dir}; {steps} refinement steps")

# %% [markdown]
# ## A synthetic test triplet: the error before and after refinement
# The first test triplet of the synthetic benchmark, reconstructed by the network and refined for `steps` steps. Errors
# follow the paper's protocol (front-face crop, 7-landmark similarity, ICP, point-to-plane distances from the ground
# truth), beside the mean face; the maps colour each ground-truth point by its distance, the table gives the rmse per
# face part. The refined mesh (PLY, mm), its coefficients and the overlay go to `results/reconstructions/`.

# %%
test = load_synthetic_test_set(root, model, limit=1)
inputs = with_landmark_noise(test.network_data(config.training.input_masks, reconstructor.parser_run_dir),
                             config.training.landmark_noise_nme)  # the paper's inputs: parser masks, detector noise
targets = make_batch(inputs, torch.tensor([0]))
synthetic = reconstruct_triplet(reconstructor, targets, steps)
with torch.no_grad():
    network_vertices, _ = model(synthetic.network_coefficients.identity, synthetic.network_coefficients.expression)
errors = {"mean face": evaluate_with_regions(model.mean_shape[None], model, test)[0],
          "network": evaluate_with_regions(network_vertices, model, test)[0],
          f"refined ({steps} steps)": evaluate_with_regions(synthetic.vertices, model, test)[0]}
sample_id = test.sample_ids[0]
plots.save_figure(overlay_figure(synthetic, targets, title=f"synthetic test triplet {sample_id}, refined"),
                  figures / "09_synthetic_overlay.png")
plots.save_figure(error_map_figure(errors, f"synthetic test triplet {sample_id}: distance from the ground truth"),
                  figures / "09_synthetic_error_maps.png")
mesh_path = Path(results_dir) / "reconstructions" / f"09_synthetic_{sample_id}.obj"
save_reconstruction(reconstructor, synthetic, targets, mesh_path,
                    mesh_formats=("ply",), title=f"synthetic test triplet {sample_id}, {steps} refinement steps",
                    extra={"ground_truth_rmse_mm": {label: error.rmse_mm for label, error in errors.items()}})
regions = pd.concat([region_errors_table([error], ids=test.sample_ids).assign(reconstruction=label)
                     for label, error in errors.items()], ignore_index=True)
write_table(regions.assign(**trained_by), tables / "09_synthetic_region_errors.csv", config)
losses = synthetic.fit.losses
print(f"fitting loss {losses['total'].iloc[0]:.4f} (network) -> {losses['total'].iloc[-1]:.4f} (refined); "
      + ", ".join(f"{label}: rmse {error.rmse_mm:.3f} mm" for label, error in errors.items()))
regions.pivot_table(index="region", columns="reconstruction", values="rmse_mm", sort=False).round(3)

# %% [markdown]
# The same error map in 3D: the ground-truth surface inside the crop, coloured by its distance from the refined
# reconstruction (drag to turn, hover for the error at a point).

# %%
from dfmvr_lib.mesh_widget import protocol_error_figure, reconstruction_mesh_figure

protocol_error_figure(errors[f"refined ({steps} steps)"],
                      title=f"synthetic test triplet {sample_id}: distance of the ground truth from the refined face")

# %%
axis = losses.plot(x="step", y=["total", "photo", "mask"], logy=True, figsize=(5, 3),
                   title="refinement of the synthetic triplet: fitting loss per step")
plots.save_figure(axis.figure, figures / "09_refinement_loss.png")

# %% [markdown]
# ## Your photos
# Triplets in `photos_dir` and its sub-folders (layouts of `dfmvr_lib.data.photos.discover_photos`: `0/ 1/ 2/`
# view folders, or `*_left / *_front / *_right` names). Pick a folder and a triplet with the widgets and press
# "reconstruct"; run headless, the notebook reconstructs the first triplet and writes its mesh (PLY, mm), coefficients
# and overlay to `reconstructions/` under `results_dir` (under `data_dir` when `show_photos` is off, and the overlays
# are then not shown here). Warnings flag views that look like different people or swapped sides, and a network
# prediction whose shape explains the photos' landmarks worse than the mean face (the refinement then starts from the
# mean face), or a fitted albedo outside the face model's colour range. The table below the views gives that range
# check per face region for the network and the refinement (`dfmvr_lib.face_model.albedo_range`: Mahalanobis distance
# of the region's mean colour from the prior's, against the prior's 99 % limit). The mesh's colours are the photos'
# own, projected onto it (`colours="photo"`).

# %%
from dfmvr_lib.data.landmarks import default_landmark_detector
from dfmvr_lib.reconstruction import photo_preparer, photo_triplets, reconstruct_photos, triplet_chooser

photo_folder = Path(photos_dir) if photos_dir else None
triplets = photo_triplets(photo_folder) if photo_folder is not None and photo_folder.is_dir() else []
if show_photos is None:
    show_photos = photo_folder is None or "shared/fixtures" not in photo_folder.resolve().as_posix()
photo_outputs = (Path(results_dir) if show_photos else Path(data_dir)) / "reconstructions"
photo_results = {}
if not triplets:
    print(f"no photo triplets in photos_dir={photos_dir!r}: the photo part is skipped")
else:
    preparer = photo_preparer(reconstructor, default_landmark_detector(verbose=False),
                              cache_dir=Path(data_dir) / ".cache" / "photos")

    def reconstruct_group(group):
        photos = reconstruct_photos(reconstructor, group.files, preparer, steps)
        prepared, result, warnings = photos.prepared, photos.result, photos.warnings
        for message in warnings:
            print("warning:", message)
        total = result.fit.losses["total"]
        print(f"{group.name}: fitting loss {total.iloc[0]:.4f} ({result.start}) -> {total.iloc[-1]:.4f} "
              f"({steps} steps)")
        written = save_reconstruction(reconstructor, result, prepared.targets, photo_outputs / f"09_{group.name}.obj",
                                      files=prepared.files, mesh_formats=("ply",), warnings=warnings,
                                      colours="photo", photos=prepared.photos,
                                      title=f"{group.name}: {reconstructor.run_dir.name} + {steps} refinement steps")
        print("wrote", *written, sep="\n  ")
        if show_photos:
            overlay_figure(result, prepared.targets, prepared.view_names, title=f"{group.name}, refined")
            plt.show()
        photo_results[group.name] = (prepared, result)

    display(triplet_chooser(photo_folder, reconstruct_group))

# %%
from dfmvr_lib.face_model.albedo_range import albedo_in_range

if triplets:
    group = triplets[0]
    reconstruct_group(group)
    prepared, photo_result = photo_results[group.name]
    views = pd.DataFrame({"triplet": group.name, "view": ["left", "front", "right"],
                          "given": [f is not None for f in prepared.files],
                          "yaw_degrees": photo_result.coefficients.angles[0, :, 1].rad2deg().numpy(),
                          "translation_z_mm": photo_result.coefficients.translation[0, :, 2].numpy(),
                          "fitting_loss_network": photo_result.fit.losses["total"].iloc[0],
                          "fitting_loss_refined": photo_result.fit.losses["total"].iloc[-1]})
    write_table(views.assign(**trained_by), tables / "09_photo_reconstruction.csv", config)
    display(views.round(3))
    albedo = pd.concat({name: albedo_in_range(model, coefficients.albedo[0]) for name, coefficients in
                        (("network", photo_result.network_coefficients), ("refined", photo_result.coefficients))},
                       names=["reconstruction", "row"]).reset_index(level="row", drop=True).reset_index()
    write_table(albedo.assign(triplet=group.name, **trained_by), tables / "09_albedo_range.csv", config)
    display(albedo.round(3))

# %% [markdown]
# ## Without a scan: the held-out-view landmark error
# A real triplet has no ground truth, but it can check itself: hold one view out, take the shape from the other two
# (the refinement fits only those two; the network, trained on full triplets, sees all three), fit only the held-out
# view's pose to its detected landmarks, and measure how far its 51 inner landmarks (iBUG 17-67; the jaw line is a
# silhouette) stay from the detector's, in pixels of a 224-px crop. A shape that is wrong in depth cannot be posed
# to match a view 30 degrees away. Every view is held out in turn; the mean face (no photo used) is the reference.
# On synthetic triplets this measure follows the true 3D error (the correlation is in `results/benchmarks/refine.md`).

# %%
from dfmvr_lib.reconstruction.held_out import held_out_photo_errors, summarise_held_out

if triplets:
    held_out = held_out_photo_errors(reconstructor, triplets, preparer, refine_steps=(steps, 5 * steps), progress=True)
    write_table(held_out.assign(**trained_by), tables / "09_held_out_views.csv", config)
    per_triplet = held_out.groupby(["triplet", "reconstruction"], sort=False)["held_out_px"].mean().unstack()
    display(per_triplet.round(2))
    display(summarise_held_out(held_out).round(3))
    axis = per_triplet.plot.bar(figsize=(8, 3), ylabel="held-out landmark error (px at 224)", rot=0,
                                title="held-out-view landmark error per triplet (lower is better)")
    axis.legend(title="reconstruction", loc="upper left", bbox_to_anchor=(1.0, 1.0))   # beside the bars, not on them
    plots.save_figure(axis.figure, figures / "09_held_out_views.png")

# %% [markdown]
# ## Turn the face, move its first components
# The reconstruction rendered by the workbook's renderer at five yaws; below, the mesh in 3D with its albedo (drag to
# turn), and sliders for the view angle and the first identity and expression components that re-render it (live in
# JupyterLab; a static notebook shows the first frame). It is the first photo triplet when `show_photos` is on, else
# the synthetic triplet.

# %%
from dfmvr_lib.reconstruction import coefficient_explorer, mesh_view_figure

if photo_results and show_photos:
    shown_name, (_, shown) = next(iter(photo_results.items()))
else:
    shown_name, shown = f"synthetic test triplet {sample_id}", synthetic
figure = mesh_view_figure(model, shown.coefficients, yaws_degrees=(-60, -30, 0, 30, 60), image_size=224,
                          title=shown_name)
plots.save_figure(figure, figures / "09_reconstruction_views.png")
display(reconstruction_mesh_figure(model, shown.coefficients, title=f"{shown_name} (albedo colours)"))
display(coefficient_explorer(model, shown.coefficients, image_size=224))

# %% [markdown]
# ## Against a ground-truth mesh of your face
# With `ground_truth_mesh` (a PLY in mm; plus `ground_truth_landmarks`, its 7 alignment points, unless it has the
# model's topology): the paper's protocol on the first photo triplet, its error map and, for model-topology meshes,
# the per-region errors.

# %%
if ground_truth_mesh and photo_results:
    import numpy as np

    from dfmvr_lib.data.mesh_io import read_ply
    from dfmvr_lib.reconstruction import evaluate_against_mesh

    gt_vertices, gt_triangles = read_ply(ground_truth_mesh)
    gt_landmarks = np.loadtxt(ground_truth_landmarks) if ground_truth_landmarks else None
    name, (_, photo_result) = next(iter(photo_results.items()))
    error = evaluate_against_mesh(model, photo_result.vertices[0], gt_vertices, gt_triangles, gt_landmarks)
    plots.save_figure(error_map_figure({name: error}, f"{name} against {Path(ground_truth_mesh).name}"),
                      figures / "09_photo_error_map.png")
    write_table(region_errors_table([error], ids=[name]).assign(**trained_by), tables / "09_photo_region_errors.csv",
                config)
    print(f"rmse {error.rmse_mm:.3f} mm, mean {error.mean_mm:.3f} mm over {error.n_points} ground-truth points")
else:
    print("no ground_truth_mesh (or no photo reconstruction): nothing to compare with")
