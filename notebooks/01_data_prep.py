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
# # 01 — Data preparation
#
# The embedded default dataset is a synthetic multi-view benchmark rendered by the workbook's own forward model, with
# exact 3D ground truth that lies outside the reconstruction model's span (more identity components plus a smooth
# per-subject displacement of a few mm). Two presets mirror the paper's settings: `pixelface-like` (fixed cameras, one
# lighting setup, many expressions; Table I) and `bosphorus-like` (varied lighting, +-45 degree side views; Tables II
# and V). Real photos and the paper's datasets are prepared the same way when their paths are given.

# %% tags=["parameters"]
profile = "cpu"          # smoke | cpu | paper
results_dir = "../results"
data_dir = "../data"         # where generated datasets and caches go (git-ignored)
photos_dir = None            # a folder of your photos or triplets
pixelface_dir = None         # Pixel-Face (processed or raw layout)
bosphorus_dir = None
multipie_dir = None

# %%
from pathlib import Path

from IPython.display import display

from dfmvr_lib import plots
from dfmvr_lib.config import get_config
from dfmvr_lib import workbook
from dfmvr_lib.data.synthetic import PRESETS, SyntheticMultiViewDataset, benchmark_statistics
from dfmvr_lib.provenance import write_table

config = get_config(profile)
figures = Path(results_dir) / "figures"
tables = Path(results_dir) / "tables"

# %% [markdown]
# ## Generate the benchmark
# One folder per preset; a finished benchmark with the same settings is reused, an interrupted one resumes.

# %%
roots = {preset: workbook.benchmark(config, data_dir, preset) for preset in PRESETS}
roots

# %% [markdown]
# ## Statistics
# Samples and subjects per split, view yaws, landmark visibility, ground-truth offset from the model span.

# %%
statistics = benchmark_statistics(roots)
write_table(statistics, tables / "01_synthetic_statistics.csv", config)
statistics

# %% [markdown]
# ## How far the ground truth lies from the reconstruction model's span
# For test meshes: the RMS distance (mm, front face) between the ground truth and its best least-squares fit with the
# reconstruction model's identity and expression components. No network can do better than this on the benchmark.

# %%
from dfmvr_lib.data.synthetic import span_residual_table
from dfmvr_lib.face_model import load_face_model

span = span_residual_table(roots, load_face_model(config.face_model))
write_table(span, tables / "01_ground_truth_span_residual.csv", config)
span.groupby("preset")["span_residual_mm"].describe()

# %% [markdown]
# ## Triplets with landmarks and part labels
# One test triplet of each preset: the three views, the 68 landmarks (hidden ones hollow) and the exact parse map.

# %%
for preset, root in roots.items():
    sample = SyntheticMultiViewDataset(root, "test")[0]
    figure = plots.sample_overlay_figure(sample, title=f"{preset}: subject {sample.subject_id}")
    plots.save_figure(figure, figures / f"01_{preset}_triplet.png")

# %%
for preset, root in roots.items():
    figure = plots.triplet_grid_figure(SyntheticMultiViewDataset(root, "train", load_mesh=False), count=6,
                                       title=preset)
    plots.save_figure(figure, figures / f"01_{preset}_grid.png")

# %% [markdown]
# ## Your photos
# With `photos_dir` set: detection and 68 landmarks (FAN when its weights are present, else dlib's offline
# detector), alignment to the face model's mean landmarks, crop to the profile's image size, landmark-polygon parse
# masks; cached per image. The summary lists every file and why any failed.

# %%
if photos_dir:
    from dfmvr_lib.data.photos import PhotoPreparer, prepare_folder

    preparer = PhotoPreparer(output_size=config.image_size, profile=profile,
                             cache_dir=Path(data_dir) / ".cache" / "photos")
    run = prepare_folder(photos_dir, preparer)
    write_table(run.summary, tables / "01_photos_summary.csv", config)
    for index, sample in enumerate(run.samples()[:3]):
        plots.save_figure(plots.sample_overlay_figure(sample), figures / f"01_photos_triplet_{index}.png")
    display(run.summary)

# %% [markdown]
# ## The paper's datasets
# Opt-in by path. Images go through the same landmark detector; parse masks come from the landmark polygons until the
# parse network (notebook 02) replaces them.

# %%
from dfmvr_lib.data.landmarks import default_landmark_detector, landmark_provider

readers = {}
if pixelface_dir:
    from dfmvr_lib.data.pixelface import PixelFaceDataset
    readers["pixelface"] = lambda provider: PixelFaceDataset(pixelface_dir, image_size=config.image_size,
                                                             landmark_provider=provider, parse_from_landmarks=True)
if bosphorus_dir:
    from dfmvr_lib.data.bosphorus import BosphorusDataset
    readers["bosphorus"] = lambda provider: BosphorusDataset(bosphorus_dir, image_size=config.image_size,
                                                             landmark_provider=provider, parse_from_landmarks=True)
if multipie_dir:
    from dfmvr_lib.data.multipie import MultiPieDataset
    readers["multipie"] = lambda provider: MultiPieDataset(multipie_dir, image_size=config.image_size,
                                                           landmark_provider=provider, parse_from_landmarks=True)
provider = landmark_provider(default_landmark_detector()) if readers else None
for name, make in readers.items():
    dataset = make(provider)
    print(f"{name}: {len(dataset)} samples")
    plots.save_figure(plots.sample_overlay_figure(dataset[0]), figures / f"01_{name}_triplet.png")
