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
# # 02 — Face-parse network
#
# The parse net of the spec (section 1.1): BiSeNet with a ResNet-18 context path and 10 classes (background, skin,
# left / right brow, left / right eye, nose, inner mouth, upper / lower lip; "left" = the image's left). It is trained
# from scratch on the synthetic benchmark's exact part labels (every view of every train sample), with colour jitter,
# blur, noise and small random affines (a flip swaps the left / right classes) so that it does not learn the
# renderer's look only. CelebAMask-HQ is mixed in when `celebamask_dir` is given. The input is RGB in [0, 1],
# normalised inside the network with the ImageNet mean / std (as face-parsing.PyTorch does). During reconstruction
# training the parser is frozen and its softmax carries the gradient of the mask loss back to the render.

# %% tags=["parameters"]
profile = "cpu"          # smoke | cpu | paper
results_dir = "../results"
data_dir = "../data"         # generated datasets, caches and parser runs (git-ignored)
celebamask_dir = None        # CelebAMask-HQ folder (optional, mixed into pretraining)
photos_dir = None            # a folder of your photos or triplets (optional)

# %%
from pathlib import Path

from IPython.display import display

from dfmvr_lib import plots
from dfmvr_lib.config import get_config
from dfmvr_lib import workbook
from dfmvr_lib.data.synthetic import SyntheticMultiViewDataset
from dfmvr_lib.parsing import evaluate_parser, mean_iou, predict_labels
from dfmvr_lib.parsing.evaluation import compare_with_polygons
from dfmvr_lib.parsing.figures import loss_curve_figure, parse_overlay_figure
from dfmvr_lib.provenance import write_table
from dfmvr_lib.runs import run_columns

config = get_config(profile)
figures = Path(results_dir) / "figures"
tables = Path(results_dir) / "tables"
root = workbook.benchmark(config, data_dir)
config.parser

# %% [markdown]
# ## Pretraining
# The run directory is keyed by a hash of the parser settings and the dataset settings: a finished run with the same
# configuration is reused, an interrupted one resumes from its last checkpoint.

# %%
run = workbook.parser_run(config, data_dir, celebamask_dir=celebamask_dir)
print(f"{run.run_dir} reused={run.reused} resumed_from={run.resumed_from}; "
      f"{run.metrics['seconds'].iloc[-1] / 60:.1f} min of training")
figure = loss_curve_figure(run.metrics)
plots.save_figure(figure, figures / "02_parser_loss.png")

# %% [markdown]
# ## IoU on the held-out synthetic test split
# Per-class IoU over all views of the test samples; the mean IoU averages the 10 classes (9 face classes and
# background).

# %%
test = SyntheticMultiViewDataset(root, "test", load_mesh=False)
iou = evaluate_parser(run.model, test)
write_table(iou.assign(**run_columns([run.run_dir])), tables / "02_parser_iou.csv", config)
print(f"mean IoU {mean_iou(iou):.3f}")
iou.round(3)

# %% [markdown]
# ## Predictions on synthetic test views
# Image, exact label map, network prediction.

# %%
sample = test[0]
predicted = predict_labels(run.model, sample.images)
figure = parse_overlay_figure(sample.images, {"ground truth": sample.parse_maps, "parser": predicted},
                              title=f"synthetic test sample {sample.sample_id}", row_titles=["A", "B", "C"])
plots.save_figure(figure, figures / "02_parser_synthetic_overlays.png")

# %% [markdown]
# ## Real photos
# With `photos_dir` set: the prepared crops (notebook 01's pipeline, cached), the landmark-polygon masks and the
# network's prediction, with the pixel agreement and per-class IoU between the two (the polygons are only an
# approximation, so this measures agreement, not accuracy).

# %%
if photos_dir:
    from dfmvr_lib.data.photos import PhotoPreparer, prepare_folder

    preparer = PhotoPreparer(output_size=config.image_size, profile=profile,
                             cache_dir=Path(data_dir) / ".cache" / "photos")
    photos = list(prepare_folder(photos_dir, preparer).photos.values())[:6]
    if photos:
        agreement, images, polygons, predicted = compare_with_polygons(run.model, photos)
        write_table(agreement, tables / "02_parser_vs_polygons_photos.csv", config)
        figure = parse_overlay_figure(images, {"landmark polygons": polygons, "parser": predicted},
                                      title="real photos", row_titles=[p.path.name for p in photos])
        plots.save_figure(figure, figures / "02_parser_photo_overlays.png")
        display(agreement.round(3))
