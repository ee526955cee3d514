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
torch.manual_seed(config.seed)
figures = Path(results_dir) / "figures"
tables = Path(results_dir) / "tables"
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

NOTEBOOK_01 = [
    markdown("""
# 01 — Data preparation

The embedded default dataset is a synthetic multi-view benchmark rendered by the workbook's own forward model, with
exact 3D ground truth that lies outside the reconstruction model's span (more identity components plus a smooth
per-subject displacement of a few mm). Two presets mirror the paper's settings: `pixelface-like` (fixed cameras, one
lighting setup, many expressions; Table I) and `bosphorus-like` (varied lighting, +-45 degree side views; Tables II
and V). Real photos and the paper's datasets are prepared the same way when their paths are given.
"""),
    parameters('''data_dir = "../data"         # where generated datasets and caches go (git-ignored)
photos_dir = None            # a folder of your photos or triplets
pixelface_dir = None         # Pixel-Face (processed or raw layout)
bosphorus_dir = None
multipie_dir = None
'''),
    code("""
from pathlib import Path

from dfmvr_lib import plots
from dfmvr_lib.config import get_config
from dfmvr_lib import workbook
from dfmvr_lib.data.synthetic import PRESETS, SyntheticMultiViewDataset, benchmark_statistics
from dfmvr_lib.provenance import write_table

config = get_config(profile)
figures = Path(results_dir) / "figures"
tables = Path(results_dir) / "tables"
"""),
    markdown("""
## Generate the benchmark
One folder per preset; a finished benchmark with the same settings is reused, an interrupted one resumes.
"""),
    code("""
roots = {preset: workbook.benchmark(config, data_dir, preset) for preset in PRESETS}
roots
"""),
    markdown("## Statistics\nSamples and subjects per split, view yaws, landmark visibility, ground-truth offset from the model span."),
    code("""
statistics = benchmark_statistics(roots)
write_table(statistics, tables / "01_synthetic_statistics.csv", config)
statistics
"""),
    markdown("""
## How far the ground truth lies from the reconstruction model's span
For test meshes: the RMS distance (mm, front face) between the ground truth and its best least-squares fit with the
reconstruction model's identity and expression components. No network can do better than this on the benchmark.
"""),
    code("""
from dfmvr_lib.data.synthetic import span_residual_table
from dfmvr_lib.face_model import load_face_model

span = span_residual_table(roots, load_face_model(config.face_model))
write_table(span, tables / "01_ground_truth_span_residual.csv", config)
span.groupby("preset")["span_residual_mm"].describe()
"""),
    markdown("""
## Triplets with landmarks and part labels
One test triplet of each preset: the three views, the 68 landmarks (hidden ones hollow) and the exact parse map.
"""),
    code("""
for preset, root in roots.items():
    sample = SyntheticMultiViewDataset(root, "test")[0]
    figure = plots.sample_overlay_figure(sample, title=f"{preset}: subject {sample.subject_id}")
    plots.save_figure(figure, figures / f"01_{preset}_triplet.png")
"""),
    code("""
for preset, root in roots.items():
    figure = plots.triplet_grid_figure(SyntheticMultiViewDataset(root, "train", load_mesh=False), count=6,
                                       title=preset)
    plots.save_figure(figure, figures / f"01_{preset}_grid.png")
"""),
    markdown("""
## Your photos
With `photos_dir` set: detection and 68 landmarks (FAN when its weights are present, else dlib's offline
detector), alignment to the face model's mean landmarks, crop to the profile's image size, landmark-polygon parse
masks; cached per image. The summary lists every file and why any failed.
"""),
    code("""
if photos_dir:
    from dfmvr_lib.data.photos import PhotoPreparer, prepare_folder

    preparer = PhotoPreparer(output_size=config.image_size, profile=profile,
                             cache_dir=Path(data_dir) / ".cache" / "photos")
    run = prepare_folder(photos_dir, preparer)
    write_table(run.summary, tables / "01_photos_summary.csv", config)
    for index, sample in enumerate(run.samples()[:3]):
        plots.save_figure(plots.sample_overlay_figure(sample), figures / f"01_photos_triplet_{index}.png")
    display(run.summary)
"""),
    markdown("""
## The paper's datasets
Opt-in by path. Images go through the same landmark detector; parse masks come from the landmark polygons until the
parse network (notebook 02) replaces them.
"""),
    code("""
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
"""),
]

NOTEBOOK_02 = [
    markdown("""
# 02 — Face-parse network

The parse net of the spec (section 1.1): BiSeNet with a ResNet-18 context path and 10 classes (background, skin,
left / right brow, left / right eye, nose, inner mouth, upper / lower lip; "left" = the image's left). It is trained
from scratch on the synthetic benchmark's exact part labels (every view of every train sample), with colour jitter,
blur, noise and small random affines (a flip swaps the left / right classes) so that it does not learn the
renderer's look only. CelebAMask-HQ is mixed in when `celebamask_dir` is given. The input is RGB in [0, 1],
normalised inside the network with the ImageNet mean / std (as face-parsing.PyTorch does). During reconstruction
training the parser is frozen and its softmax carries the gradient of the mask loss back to the render.
"""),
    parameters('''data_dir = "../data"         # generated datasets, caches and parser runs (git-ignored)
celebamask_dir = None        # CelebAMask-HQ folder (optional, mixed into pretraining)
photos_dir = None            # a folder of your photos or triplets (optional)
'''),
    code("""
from pathlib import Path

from dfmvr_lib import plots
from dfmvr_lib.config import get_config
from dfmvr_lib import workbook
from dfmvr_lib.data.synthetic import SyntheticMultiViewDataset
from dfmvr_lib.parsing import evaluate_parser, mean_iou, predict_labels
from dfmvr_lib.parsing.evaluation import compare_with_polygons
from dfmvr_lib.parsing.figures import loss_curve_figure, parse_overlay_figure
from dfmvr_lib.provenance import write_table

config = get_config(profile)
figures = Path(results_dir) / "figures"
tables = Path(results_dir) / "tables"
root = workbook.benchmark(config, data_dir)
config.parser
"""),
    markdown("""
## Pretraining
The run directory is keyed by a hash of the parser settings and the dataset settings: a finished run with the same
configuration is reused, an interrupted one resumes from its last checkpoint.
"""),
    code("""
run = workbook.parser_run(config, data_dir, celebamask_dir=celebamask_dir)
print(f"{run.run_dir} reused={run.reused} resumed_from={run.resumed_from}; "
      f"{run.metrics['seconds'].iloc[-1] / 60:.1f} min of training")
figure = loss_curve_figure(run.metrics)
plots.save_figure(figure, figures / "02_parser_loss.png")
"""),
    markdown("""
## IoU on the held-out synthetic test split
Per-class IoU over all views of the test samples; the mean IoU averages the 10 classes (9 face classes and
background).
"""),
    code("""
test = SyntheticMultiViewDataset(root, "test", load_mesh=False)
iou = evaluate_parser(run.model, test)
write_table(iou, tables / "02_parser_iou.csv", config)
print(f"mean IoU {mean_iou(iou):.3f}")
iou.round(3)
"""),
    markdown("## Predictions on synthetic test views\nImage, exact label map, network prediction."),
    code("""
sample = test[0]
predicted = predict_labels(run.model, sample.images)
figure = parse_overlay_figure(sample.images, {"ground truth": sample.parse_maps, "parser": predicted},
                              title=f"synthetic test sample {sample.sample_id}", row_titles=["A", "B", "C"])
plots.save_figure(figure, figures / "02_parser_synthetic_overlays.png")
"""),
    markdown("""
## Real photos
With `photos_dir` set: the prepared crops (notebook 01's pipeline, cached), the landmark-polygon masks and the
network's prediction, with the pixel agreement and per-class IoU between the two (the polygons are only an
approximation, so this measures agreement, not accuracy).
"""),
    code("""
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
"""),
]

NOTEBOOK_03 = [
    markdown("""
# 03 — Training DF-MVR

The full model of the spec (sections 1-3): three views (RGB in [-1, 1] plus the one-hot face mask) go through the
Tri-UNet fusion backbone (three unshared encoders, one shared decoder with an attention gate per view and level),
the RedNet-50 regressor turns the fused map into the shared identity / expression / albedo / lighting coefficients
and a pose per view, and the differentiable renderer draws the result in every view. Losses: the photo loss weighted
by the dilated part mask, the mask loss through the frozen parser of notebook 02 (with gradient), the weighted 2D
landmark loss, the 3D landmark loss after a 7-point similarity, and the coefficient regularisation.

**The paper's inputs.** The network's mask channels, the photo-loss weight map and the mask-loss target are the
labels of the frozen parser of notebook 02 run on the input views (computed once per benchmark and cached, keyed by
the parser run), in training and at test time; the 2D landmark targets carry a detector's error (NME 0.028, what the
workbook's offline detector measured on a real photo). The renderer's exact parse maps and exact landmark
projections are oracle settings (`training.input_masks="ground_truth"`, `training.landmark_noise_nme=0`); table rows
that use them say "oracle".
"""),
    parameters('data_dir = "../data"         # generated datasets and training runs (git-ignored)\n'),
    code("""
import pandas as pd
import torch
from IPython.display import Markdown, display

from dfmvr_lib import plots, workbook
from dfmvr_lib.camera import PerspectiveCamera
from dfmvr_lib.config import get_config
from dfmvr_lib.experiments import load_synthetic_test_set, run_report
from dfmvr_lib.face_model.factory import load_face_model
from dfmvr_lib.precision import precision_note
from dfmvr_lib.provenance import REPOSITORY_ROOT, results_paths, write_table
from dfmvr_lib.training import make_batch, reconstruct, synthetic_triplets
from dfmvr_lib.training.figures import (learning_figure, prediction_figure, training_curves_figure,
                                        vertex_error_figure)
from dfmvr_lib.training.input_masks import with_input_masks

config = get_config(profile)
figures, tables = results_paths(results_dir)
root = workbook.benchmark(config, data_dir)
parser_run = workbook.parser_run(config, data_dir)
print(precision_note(config.training.precision))
config.network, config.training
"""),
    markdown("""
## How the cpu profile was chosen: the learning-efficiency study
`benchmarks/bench_learning.py` trains variants of the cpu profile (image size, widths, batch size, learning rate and
warm-up, normalisation, loss balance, pose-head start, data size, oracle inputs) for the same number of steps, two
side by side with one thread each, and records the validation error against training minutes, with the mean face
and the ceiling as lines (right: the fraction of the mean-face -> ceiling gap closed, comparable across validation
sets). The committed study is `results/benchmarks/learning.md`; it is read here, not rerun.
"""),
    code("""
study = REPOSITORY_ROOT / "results" / "benchmarks" / "learning.csv"
if study.is_file():
    curves = pd.read_csv(study)
    plots.save_figure(learning_figure(curves), figures / "03_learning_efficiency.png")
    last = curves.groupby("variant", sort=False).tail(1)
    display(last[["variant", "change", "minutes", "network_mm", "mean_face_mm", "ceiling_mm", "gap_closed"]].round(3))
else:
    print(f"{study} is missing: run benchmarks/bench_learning.py")
"""),
    markdown("""
## Training
One run per seed of the profile (`config.seeds`), two side by side (one thread each) on the cpu profile's two cores.
Each run directory is keyed by a hash of the network, loss, training, face-model and camera settings, the precision,
the dataset and the parser run: a finished run is reused, an interrupted one resumes from its last checkpoint
(model, optimiser, schedule and data position). The first seed's run is the default checkpoint of
`dfmvr reconstruct` and Table I's full-schedule row.
"""),
    code("""
runs = workbook.notebook_03_runs(config, data_dir)
run = runs[0]
for r in runs:
    print(f"seed {r.config.seed}: {r.run_dir} reused={r.reused}; {r.metrics['seconds'].iloc[-1] / 60:.1f} min of "
          f"training, {r.metrics['seconds'].diff().median():.2f} s per step of {config.training.batch_size} triplets")
figure = training_curves_figure(run.metrics, run.validation)
plots.save_figure(figure, figures / "03_training_curves.png")
"""),
    markdown("""
## Predictions on validation triplets
Top: the input views; middle: the render pasted over them; bottom: the render with the predicted 2D landmarks (red)
and the landmark targets (green, with the detector's error).
"""),
    code("""
model = load_face_model(config.face_model)
camera = PerspectiveCamera.from_config(config)
validation = with_input_masks(synthetic_triplets(root, "validation"), config.training.input_masks, root,
                              "validation", parser_run.run_dir)
for index in (0, 1):
    batch = make_batch(validation, torch.tensor([index]))
    with torch.no_grad():
        prediction = reconstruct(run.network, model, camera, batch.network_images, batch.network_parse_maps)
    figure = prediction_figure(batch.images[0], prediction.render.render.image,
                               prediction.render.render.alpha[:, 0], prediction.render.landmarks_2d[0],
                               batch.landmarks_2d[0], title=f"validation triplet {index}")
    plots.save_figure(figure, figures / f"03_prediction_validation_{index}.png")
"""),
    markdown("""
## Against the mean face and the ceiling, on the test split
Every test triplet (new subjects), with the parser's masks as input. Two measures: the mean vertex error over the
front face after a similarity alignment, and the paper's scan protocol (crop, 7-landmark similarity, ICP,
point-to-plane rmse). Two references: the **mean face** (what the untrained network predicts) and the **ceiling**
(the least-squares fit of the model's identity and expression to each ground-truth mesh: what a perfect regressor
of these coefficients would reach; an oracle). `gap_closed` is the fraction of the mean-face -> ceiling gap the
network closes; `p_vs_mean_face` the paired Wilcoxon p-value on the same triplets.
"""),
    code("""
test = load_synthetic_test_set(root, model)
summaries, per_sample = [], []
for r in runs:
    samples, summary = run_report(r, test, parser_run.run_dir)
    summaries.append(summary.assign(seed=r.config.seed))
    per_sample.append(samples.assign(seed=r.config.seed))
summary = pd.concat(summaries, ignore_index=True)
write_table(summary, tables / "03_test_gap.csv", config)
first = per_sample[0].rename(columns={"network_vertex_mm": "network_mm", "mean_face_vertex_mm": "mean_face_mm"})
plots.save_figure(vertex_error_figure(first, title=f"test split, seed {runs[0].config.seed}"),
                  figures / "03_test_vertex_error.png")
summary[["seed", "measure", "network_mm", "mean_face_mm", "ceiling_mm", "gap_closed", "vs_mean_face_mm",
         "p_vs_mean_face", "network_better_fraction", "n_test"]].round(4)
"""),
    code("""
target = 0.40
lines = []
for row in summary.itertuples():
    met = "meets" if row.gap_closed >= target else "does not meet"
    lines.append(f"- seed {row.seed}, {row.measure}: the network closes **{100 * row.gap_closed:.0f} %** of the gap "
                 f"({row.network_mm:.3f} mm against {row.mean_face_mm:.3f} mm for the mean face and "
                 f"{row.ceiling_mm:.3f} mm for the ceiling; paired p = {row.p_vs_mean_face:.1g}); this {met} the "
                 f"workbook's target of {100 * target:.0f} %.")
display(Markdown("\\n".join(lines)))
"""),
]

EXPERIMENT_SETUP = """
import pandas as pd
from IPython.display import Markdown, display

from dfmvr_lib import plots, workbook
from dfmvr_lib.config import get_config
from dfmvr_lib.experiments import (FRONT_ONLY, Claim, RowSpec, claims_markdown, claims_table, comparison_figure,
                                   load_synthetic_test_set, mean_face_statement, ordering_statement, run_table)
from dfmvr_lib.face_model.factory import load_face_model
from dfmvr_lib.precision import precision_note
from dfmvr_lib.provenance import results_paths, write_table

config = get_config(profile)
figures, tables = results_paths(results_dir)
model = load_face_model(config.face_model)
pixelface_root = workbook.benchmark(config, data_dir, "pixelface-like")
parser_run = workbook.parser_run(config, data_dir)
comparison_seeds = config.seeds[:config.experiments.comparison_seeds]
common = dict(profile=profile, parser_run_dir=parser_run.run_dir, seeds=comparison_seeds,
              runs_root=workbook.runs_dir(data_dir, "reconstruction"),
              parallel_trainings=config.experiments.parallel_trainings)
print(f"seeds {comparison_seeds} (ablation: {config.seeds}), {config.experiments.training_steps or config.training.steps} "
      f"training steps per run, {config.experiments.parallel_trainings} trainings side by side; "
      f"{precision_note(config.training.precision)}")
"""

TABLE_NOTES = """
Every table has two reference rows: the **mean face** (what every network predicts before training) and the
**ceiling** (the least-squares fit of the model to each ground-truth mesh, an oracle: no regressor of these
coefficients can do better). Every row of a trained method carries `vs_mean_face_mm` (mean paired difference,
negative = better) and `p_vs_mean_face` (paired Wilcoxon p-value on the same test triplets), and `run_dirs`, the run
directories it was evaluated from.
"""

NOTEBOOK_04 = [
    markdown("""
# 04 — Comparison with the baselines (Tables I and II)

DF-MVR against Deng et al. (Deep3DFace, single-image regression) and Shang et al. (MGCNet, single-image regression
trained with multi-view consistency), all trained on the same data with the same renderer, face model and schedule
(`dfmvr_lib/experiments/methods.py` says exactly what each baseline keeps and leaves out). Errors: the paper's
protocol (front-face crop, 7-landmark similarity, ICP, point-to-plane distances from the ground truth to the
prediction), `rmse_mm` and `mean_mm`, mean and std over the test samples of all seeds.

The paper reports the baselines' **best of the three views** (an oracle choice that needs the ground truth); we
report it and the **mean over the views**, labelled. The `paper_rmse_mm` column is the paper's own number for the
row, measured on its datasets with BFM09: compare orderings, not values.

- **Table I** (Pixel-Face in the paper): the `pixelface-like` synthetic setting (side views at +-30 deg, one lighting).
- **Table II** (train Multi-PIE, test Bosphorus, no L_3d): the `bosphorus-like` setting (side views at +-45 deg,
  varied lighting), all methods without 3D landmarks.

Every method trains for `config.experiments.training_steps` steps. Runs shared with other notebooks: DF-MVR and
DF-MVR w/o L_3d of Table I (seed 0) are also v6 and v5 of Table IV (notebook 06), and Deng and Shang of Table I are
the baselines of Table III (notebook 05); the `training.steps` row of Table I is notebook 03's first run, reused;
the Table II runs are the models of Table V (notebook 08). The runs of both tables train together, two side by side.
""" + TABLE_NOTES),
    parameters('data_dir = "../data"         # generated datasets and training runs (git-ignored)\n'),
    code(EXPERIMENT_SETUP),
    code("""
from dfmvr_lib.experiments import train_methods

bosphorus_root = workbook.benchmark(config, data_dir, "bosphorus-like")
table_1_specs = [RowSpec("shang"), RowSpec("deng"), RowSpec("dfmvr_no_l3d"), RowSpec("dfmvr"),
                 RowSpec("dfmvr", paper_row="none", overrides={"training.steps": config.training.steps})]
table_2_specs = [RowSpec("shang"), RowSpec("deng"), RowSpec("dfmvr_no_l3d")]
train_methods([(s.method, seed, s.overrides, pixelface_root) for s in table_1_specs for seed in comparison_seeds]
              + [(s.method, seed, s.overrides, bosphorus_root) for s in table_2_specs for seed in comparison_seeds],
              profile=profile, dataset_root=pixelface_root, parser_run_dir=parser_run.run_dir,
              runs_root=common["runs_root"], workers=config.experiments.parallel_trainings)
"""),
    markdown("## Table I — pixelface-like setting"),
    code("""
pixelface_test = load_synthetic_test_set(pixelface_root, model, limit=config.experiments.test_samples)
table_1, errors_1 = run_table("Table I", "pixelface-like", table_1_specs, dataset_root=pixelface_root,
                              test_set=pixelface_test, **common)
write_table(table_1, tables / "04_table1_pixelface.csv", config)
plots.save_figure(comparison_figure(table_1, "Table I: pixelface-like synthetic setting"),
                  figures / "04_table1_pixelface.png")
table_1.drop(columns=["run_dirs"]).round(4)
"""),
    code("""
claims_1 = claims_table(errors_1, [
    Claim("DF-MVR beats Deng et al. (best view)", "dfmvr[ABC]", "deng[ABC]", "fused", "best_view"),
    Claim("DF-MVR beats Shang et al. (best view)", "dfmvr[ABC]", "shang[ABC]", "fused", "best_view"),
    Claim("DF-MVR beats DF-MVR w/o L_3d", "dfmvr[ABC]", "dfmvr_no_l3d[ABC]"),
    Claim("DF-MVR w/o L_3d beats Deng et al. (best view)", "dfmvr_no_l3d[ABC]", "deng[ABC]", "fused", "best_view"),
    Claim("DF-MVR w/o L_3d beats Shang et al. (best view)", "dfmvr_no_l3d[ABC]", "shang[ABC]", "fused", "best_view"),
    Claim("Deng et al. beats Shang et al. (best view)", "deng[ABC]", "shang[ABC]", "best_view", "best_view"),
])
write_table(claims_1, tables / "04_table1_claims.csv", config)
display(Markdown(mean_face_statement(table_1) + "\\n\\n" + claims_markdown(claims_1) + "\\n\\n"
                 + ordering_statement(table_1[table_1["test_input"] != "mean_over_views"])))
"""),
    markdown("## Table II — bosphorus-like setting (no 3D landmarks for any method)"),
    code("""
bosphorus_test = load_synthetic_test_set(bosphorus_root, model, limit=config.experiments.test_samples)
table_2, errors_2 = run_table("Table II", "bosphorus-like", table_2_specs, dataset_root=bosphorus_root,
                              test_set=bosphorus_test, **common)
write_table(table_2, tables / "04_table2_bosphorus.csv", config)
plots.save_figure(comparison_figure(table_2, "Table II: bosphorus-like synthetic setting"),
                  figures / "04_table2_bosphorus.png")
claims_2 = claims_table(errors_2, [
    Claim("DF-MVR w/o L_3d beats Shang et al. (best view)", "dfmvr_no_l3d[ABC]", "shang[ABC]", "fused", "best_view"),
    Claim("DF-MVR w/o L_3d beats Deng et al. (best view)", "dfmvr_no_l3d[ABC]", "deng[ABC]", "fused", "best_view"),
    Claim("Shang et al. beats Deng et al. (best view)", "shang[ABC]", "deng[ABC]", "best_view", "best_view"),
])
write_table(claims_2, tables / "04_table2_claims.csv", config)
display(Markdown(mean_face_statement(table_2) + "\\n\\n" + claims_markdown(claims_2) + "\\n\\n"
                 + ordering_statement(table_2[table_2["test_input"] != "mean_over_views"])))
table_2.drop(columns=["run_dirs"]).round(4)
"""),
]

NOTEBOOK_05 = [
    markdown("""
# 05 — Single-view reconstruction (Table III)

DF-MVR trained in single-view mode: with probability 1/3 the input triple keeps one view (A, B or C, equally often)
and the other two are black images with empty masks; the losses use only the views the network saw. At test time
the network gets **one real view** (the front view B; the others black). We also show the same network with all
three views (the paper's "ours" row of Table III), the normally trained DF-MVR given the front view alone, and the
baselines on the front view alone and as the best of three.

Runs reused: Deng, Shang and DF-MVR are the Table I runs of notebook 04 (trained here only when notebook 04 has not
run); the single-view run is the one run of this notebook.
""" + TABLE_NOTES),
    parameters('data_dir = "../data"         # generated datasets and training runs (git-ignored)\n'),
    code(EXPERIMENT_SETUP),
    code("""
from dfmvr_lib.experiments import table_rows

test = load_synthetic_test_set(pixelface_root, model, limit=config.experiments.test_samples)
specs = [RowSpec("shang", paper_row="shang"), RowSpec("deng", paper_row="deng"),
         RowSpec("dfmvr_single_view", input_views=FRONT_ONLY),
         RowSpec("dfmvr_single_view", paper_row="dfmvr"),
         RowSpec("dfmvr", paper_row="none", input_views=FRONT_ONLY)]
table_3, errors_3 = run_table("Table III", "pixelface-like", specs, dataset_root=pixelface_root, test_set=test,
                              **common)
front_rows = [row for method in ("shang", "deng")     # the baselines on the front view alone (no oracle)
              for row in table_rows(errors_3[RowSpec(method).key], table="Table III", method=method,
                                    setting="pixelface-like", profile=profile,
                                    choices={"B": "front view B alone"})]
table_3 = pd.concat([table_3, pd.DataFrame(front_rows)], ignore_index=True)
write_table(table_3, tables / "05_table3_single_view.csv", config)
plots.save_figure(comparison_figure(table_3, "Table III: single-view input (pixelface-like)"),
                  figures / "05_table3_single_view.png")
claims_3 = claims_table(errors_3, [
    Claim("DF-MVR single-view (front view alone) beats Deng et al. (front view alone)", "dfmvr_single_view[B]",
          "deng[ABC]", "fused", "B"),
    Claim("DF-MVR single-view (front view alone) beats Shang et al. (front view alone)", "dfmvr_single_view[B]",
          "shang[ABC]", "fused", "B"),
    Claim("DF-MVR single-view: three views beat the front view alone", "dfmvr_single_view[ABC]",
          "dfmvr_single_view[B]"),
    Claim("single-view training helps a one-view test (front view alone)", "dfmvr_single_view[B]", "dfmvr[B]"),
])
write_table(claims_3, tables / "05_table3_claims.csv", config)
display(Markdown(mean_face_statement(table_3) + "\\n\\n" + claims_markdown(claims_3) + "\\n\\n"
                 + ordering_statement(table_3)))
table_3.drop(columns=["run_dirs"]).round(4)
"""),
]

NOTEBOOK_06 = [
    markdown("""
# 06 — Ablation (Table IV)

The six versions of the paper's ablation, each trained with every seed of the profile:
v1 per-view CNN encoders fused at the end + RedNet; v2 per-view UNets fused at the end + RedNet; v3 Tri-UNet +
ResNet-50; v4 no face mask (RGB input, no mask loss, no part weighting); v5 no 3D landmark loss; v6 the full model.
A paired test on the same test samples (errors averaged over seeds) says whether each version differs from v6:
`vs_v6_mean_difference_mm` (this version minus v6, mm) and its p-values, joined to the rows by method.

Runs reused: v5 and v6 of seed 0 are DF-MVR w/o L_3d and DF-MVR of Table I (notebook 04).
""" + TABLE_NOTES),
    parameters('data_dir = "../data"         # generated datasets and training runs (git-ignored)\n'),
    code(EXPERIMENT_SETUP),
    code("""
from dfmvr_lib.experiments import ABLATION_VERSIONS, paired_comparison

test = load_synthetic_test_set(pixelface_root, model, limit=config.experiments.test_samples)
specs = [RowSpec(method, paper_row=version) for version, method in ABLATION_VERSIONS.items()]
table_4, errors_4 = run_table("Table IV", "pixelface-like", specs, dataset_root=pixelface_root, test_set=test,
                              **dict(common, seeds=config.seeds))
versions = {method: version for version, method in ABLATION_VERSIONS.items()}
table_4.insert(1, "version", [versions.get(m.split(" (oracle")[0], m.replace("_", " ")) for m in table_4["method"]])
full = errors_4[RowSpec("dfmvr").key]
paired = pd.DataFrame([{"method_key": spec.method, **paired_comparison(errors_4[spec.key], full)} for spec in specs])
table_4["method_key"] = [m.split(" (oracle")[0] for m in table_4["method"]]
table_4 = table_4.merge(paired.add_prefix("vs_v6_").rename(columns={"vs_v6_method_key": "method_key"}),
                        on="method_key", how="left").drop(columns=["method_key"])
write_table(table_4, tables / "06_table4_ablation.csv", config)
plots.save_figure(comparison_figure(table_4, "Table IV: ablation (pixelface-like)"), figures / "06_table4_ablation.png")
claims_4 = claims_table(errors_4, [Claim(f"v6 (full) beats {version}", "dfmvr[ABC]", RowSpec(method).key)
                                   for version, method in ABLATION_VERSIONS.items() if method != "dfmvr"])
write_table(claims_4, tables / "06_table4_claims.csv", config)
display(Markdown(mean_face_statement(table_4) + "\\n\\n" + claims_markdown(claims_4) + "\\n\\n"
                 + ordering_statement(table_4)))
table_4.drop(columns=["run_dirs"]).round(4)
"""),
]

NOTEBOOK_07 = [
    markdown("""
# 07 — Sensitivity to the loss weights (Fig. 11)

The paper sweeps the photo-loss weight w_p with the other weights fixed (best around 4-5), then the mask-loss
weight w_m at the best w_p (best around 3). Same here, with the first seed of the profile; each point is the mean
rmse over the test samples (error bars: standard error of that mean). The best weight is read off the
**validation** split's vertex error (the run's last validation pass), not the test split; the test rmse is shown.

Runs reused: the point at the profile's own weights (w_p = 4, w_m = 3) is DF-MVR of Table I (notebook 04).
""" + TABLE_NOTES),
    parameters('data_dir = "../data"         # generated datasets and training runs (git-ignored)\n'),
    code(EXPERIMENT_SETUP),
    code("""
from pathlib import Path

from dfmvr_lib.experiments import sensitivity_figure

test = load_synthetic_test_set(pixelface_root, model, limit=config.experiments.test_samples)
photo_weights, mask_weights = config.experiments.photo_weights, config.experiments.mask_weights
sweep = dict(common, seeds=config.seeds[:1])


def validation_error(row) -> float:
    \"\"\"The run's last validation vertex error (mm): the selection criterion of the sweep.\"\"\"
    return float(pd.read_csv(Path(row["run_dirs"].split()[0]) / "validation.csv")["network_mm"].iloc[-1])


photo_rows, _ = run_table("Fig. 11", "pixelface-like",
                          [RowSpec("dfmvr", paper_row="none", overrides={"losses.photo": w}) for w in photo_weights],
                          dataset_root=pixelface_root, test_set=test, reference_rows=False, **sweep)
photo_rows["weight"], photo_rows["value"] = "photo", photo_weights
photo_rows["validation_mm"] = [validation_error(row) for _, row in photo_rows.iterrows()]
best_photo = float(photo_rows.loc[photo_rows["validation_mm"].idxmin(), "value"])
mask_rows, _ = run_table("Fig. 11", "pixelface-like",
                         [RowSpec("dfmvr", paper_row="none", overrides={"losses.photo": best_photo, "losses.mask": w})
                          for w in mask_weights], dataset_root=pixelface_root, test_set=test, **sweep)
references = mask_rows[mask_rows["method"].isin(["mean_face", "ceiling"])]
mask_rows = mask_rows[~mask_rows["method"].isin(["mean_face", "ceiling"])].copy()
mask_rows["weight"], mask_rows["value"] = "mask", mask_weights
mask_rows["validation_mm"] = [validation_error(row) for _, row in mask_rows.iterrows()]
best_mask = float(mask_rows.loc[mask_rows["validation_mm"].idxmin(), "value"])
sweeps = pd.concat([photo_rows, mask_rows, references], ignore_index=True)
sweeps["rmse_mm_sem"] = sweeps["rmse_mm_std"] / sweeps["n_test"] ** 0.5
write_table(sweeps, tables / "07_sensitivity.csv", config)
plots.save_figure(sensitivity_figure(sweeps[sweeps["weight"].notna()]), figures / "07_sensitivity.png")
paper_best = {"photo": (4.0, 5.0), "mask": (3.0,)}
lines = [mean_face_statement(sweeps)]
for name, best in (("photo", best_photo), ("mask", best_mask)):
    holds = "agrees with" if best in paper_best[name] else "differs from"
    lines.append(f"- best w_{name[0]} on the validation split: **{best:g}**; this {holds} the paper's best "
                 f"({' - '.join(f'{v:g}' for v in paper_best[name])}).")
display(Markdown("\\n".join(lines)))
sweeps[["weight", "value", "validation_mm", "rmse_mm_mean", "rmse_mm_sem", "vs_mean_face_mm", "p_vs_mean_face",
        "n_test", "seeds", "method"]].round(4)
"""),
]

NOTEBOOK_08 = [
    markdown("""
# 08 — Robustness to the left view's angle (Table V) and per-region error maps (Fig. 13)

The models of Table II (bosphorus-like training, no 3D landmarks) are tested on new subjects whose **left view**
is at 10, 20, 30 or 45 degrees, or at a random angle in [10, 45]; the front and right views stay as in training.
The test sets are generated here with their own seed (no subject overlaps the training split). Then per-region
errors (the part classes of the ground-truth vertices) and error maps on one test face.

Runs reused: all three methods are the Table II runs of notebook 04 (nothing new is trained here when notebook 04
has run).
""" + TABLE_NOTES),
    parameters('data_dir = "../data"         # generated datasets and training runs (git-ignored)\n'),
    code(EXPERIMENT_SETUP),
    code("""
from dfmvr_lib.data.synthetic import generate_benchmark
from dfmvr_lib.data.synthetic_settings import SyntheticSettings


bosphorus_root = workbook.benchmark(config, data_dir, "bosphorus-like")
robust_rows, robust_errors, robust_roots = [], {}, {}
for yaw in config.experiments.left_yaws:
    left = dict(left_yaw_mode="uniform") if yaw == "random" else dict(left_yaw_mode="fixed", left_yaw_degrees=yaw)
    settings = SyntheticSettings.from_config(config, "bosphorus-like", seed=config.seed + 1000, train_subjects=0,
                                             validation_subjects=0, yaw_range_degrees=(10.0, 45.0), **left)
    robust_roots[yaw] = generate_benchmark(workbook.dataset_dir(data_dir, profile, f"robustness_left_{yaw}"), settings)
    test = load_synthetic_test_set(robust_roots[yaw], model, limit=config.experiments.test_samples)
    rows, robust_errors[yaw] = run_table("Table V", f"left view {yaw}",
                                         [RowSpec("shang", paper_row="none"), RowSpec("deng", paper_row="none"),
                                          RowSpec("dfmvr_no_l3d", paper_row=f"dfmvr_no_l3d@{yaw}")],
                                         dataset_root=bosphorus_root, test_set=test, **common)
    rows.insert(3, "left_yaw", str(yaw))
    robust_rows.append(rows)
table_5 = pd.concat(robust_rows, ignore_index=True)
write_table(table_5, tables / "08_table5_robustness.csv", config)
claims_5 = pd.concat([claims_table(errors, [
    Claim(f"left view {yaw}: DF-MVR w/o L_3d beats Shang et al. (best view)", "dfmvr_no_l3d[ABC]", "shang[ABC]",
          "fused", "best_view"),
    Claim(f"left view {yaw}: DF-MVR w/o L_3d beats Deng et al. (best view)", "dfmvr_no_l3d[ABC]", "deng[ABC]",
          "fused", "best_view")]) for yaw, errors in robust_errors.items()], ignore_index=True)
write_table(claims_5, tables / "08_table5_claims.csv", config)
pivot = table_5.pivot_table(index=["method", "test_input"], columns="left_yaw", values="rmse_mm_mean", sort=False)
spread = {method: float(pivot.loc[method].max(axis=1).iloc[0] - pivot.loc[method].min(axis=1).iloc[0])
          for method in ("dfmvr_no_l3d", "deng", "shang") if method in pivot.index.get_level_values(0)}
display(Markdown(mean_face_statement(table_5) + "\\n\\n" + claims_markdown(claims_5) + "\\n\\n"
                 + "- Spread of the mean rmse over the left-view yaws (max - min, first test input of each method; "
                 "the paper: DF-MVR 1.399-1.425 mm): "
                 + ", ".join(f"{m} {v:.3f} mm" for m, v in spread.items()) + "."))
pivot.round(4)
"""),
    markdown("""
### Per-region errors and error maps (Fig. 13)
The first test face of the 30-degree set (the first set in the smoke profile), reconstructed by each method (first
seed; the baselines from the front view B, with the parser's masks where the method uses them); each ground-truth
point is coloured by its distance to the prediction. The table gives the rmse per face part over all test faces.
"""),
    code("""
from dfmvr_lib.camera import PerspectiveCamera
from dfmvr_lib.evaluation import region_errors_table
from dfmvr_lib.experiments import error_map_figure, evaluate_with_regions, is_single_image, predict_vertices, train_method
from dfmvr_lib.training.loop import needs_parser

map_yaw = 30 if 30 in config.experiments.left_yaws else config.experiments.left_yaws[0]
test = load_synthetic_test_set(robust_roots[map_yaw], model, limit=config.experiments.test_samples)
camera = PerspectiveCamera.from_config(config)
maps, region_tables = {}, []
for method in ("shang", "deng", "dfmvr_no_l3d"):
    run = train_method(profile, method, bosphorus_root, parser_run.run_dir, config.seeds[0], common["runs_root"])
    data = test.network_data(run.config.training.input_masks, parser_run.run_dir if needs_parser(run.config) else None)
    vertices = predict_vertices(run.network, model, camera, data)
    vertices = vertices[:, 1] if is_single_image(method) else vertices[:, 0]     # baselines: the front view
    results = evaluate_with_regions(vertices, model, test)
    maps[method] = results[0]
    regions = region_errors_table(results, ids=test.sample_ids)
    regions.insert(0, "method", method)
    region_tables.append(regions)
region_table = pd.concat(region_tables, ignore_index=True)
write_table(region_table, tables / "08_region_errors.csv", config)
plots.save_figure(error_map_figure(maps, f"error maps, left view at {map_yaw} deg (baselines: front view B)"),
                  figures / "08_error_maps.png")
region_table.groupby(["region", "method"], sort=False)["rmse_mm"].mean().unstack().round(3)
"""),
]

NOTEBOOK_09 = [
    markdown("""
# 09 — Reconstruct your own photos

The trained DF-MVR network of notebook 03 applied to photos. Each photo is prepared as in notebook 01 (68 landmarks,
crop aligned to the face model's framing at the network's image size) and labelled by the frozen face parser of
notebook 02 (the network's mask input); the network predicts the face and a pose per view; then a short
**multi-view test-time refinement** fits the coefficients and poses to the photos with the training losses (photo,
mask through the parser, 2D landmarks, regularisation; no 3D landmarks, which need ground truth). Views that are not
given are black with empty masks, as in single-view training. The same pipeline is the command
`dfmvr reconstruct LEFT FRONT RIGHT -o face.obj [--refine]` (see `dfmvr reconstruct --help`).

First a synthetic test triplet, whose ground truth gives the error before and after refinement and per-region error
maps; then your photos (`photos_dir`; skipped when the folder is absent), with widgets to pick a triplet, to turn the
reconstructed face and to move its first identity and expression components.
"""),
    parameters('''data_dir = "../data"         # generated datasets and training runs (git-ignored)
photos_dir = "../../shared/fixtures/real_multiview"   # a folder of photo triplets (skipped when absent)
show_photos = None           # show the photos here and write their results under results_dir; None: yes, except
                             # for the development fixtures (../shared), which may not be published
checkpoint = None            # a finished reconstruction run directory; None: this profile's run of notebook 03
refine_steps = None          # None: the command's default (40); 5 in the smoke profile
ground_truth_mesh = None     # optional PLY (mm) of the photographed face, for an error map
ground_truth_landmarks = None   # its 7 alignment points (text file, 7 x 3 mm) unless it has the model's topology
'''),
    code("""
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
root = workbook.benchmark(config, data_dir)
print(f"run {reconstructor.run_dir} ({config.profile} profile, {config.image_size} px), parser "
      f"{reconstructor.parser_run_dir}; {steps} refinement steps")
"""),
    markdown("""
## A synthetic test triplet: the error before and after refinement
The first test triplet of the synthetic benchmark, reconstructed by the network and refined for `steps` steps. Errors
follow the paper's protocol (front-face crop, 7-landmark similarity, ICP, point-to-plane distances from the ground
truth), beside the mean face; the maps colour each ground-truth point by its distance, the table gives the rmse per
face part. The refined mesh (PLY, mm), its coefficients and the overlay go to `results/reconstructions/`.
"""),
    code("""
test = load_synthetic_test_set(root, model, limit=1)
inputs = with_landmark_noise(test.network_data(config.training.input_masks, reconstructor.parser_run_dir),
                             config.training.landmark_noise_nme)        # the paper's inputs: parser masks, detector noise
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
save_reconstruction(reconstructor, synthetic, targets, Path(results_dir) / "reconstructions" / f"09_synthetic_{sample_id}.obj",
                    mesh_formats=("ply",), title=f"synthetic test triplet {sample_id}, {steps} refinement steps",
                    extra={"ground_truth_rmse_mm": {label: error.rmse_mm for label, error in errors.items()}})
regions = pd.concat([region_errors_table([error], ids=test.sample_ids).assign(reconstruction=label)
                     for label, error in errors.items()], ignore_index=True)
write_table(regions, tables / "09_synthetic_region_errors.csv", config)
losses = synthetic.fit.losses
print(f"fitting loss {losses['total'].iloc[0]:.4f} (network) -> {losses['total'].iloc[-1]:.4f} (refined); "
      + ", ".join(f"{label}: rmse {error.rmse_mm:.3f} mm" for label, error in errors.items()))
regions.pivot_table(index="region", columns="reconstruction", values="rmse_mm", sort=False).round(3)
"""),
    code("""
axis = losses.plot(x="step", y=["total", "photo", "mask"], logy=True, figsize=(5, 3),
                   title="refinement of the synthetic triplet: fitting loss per step")
plots.save_figure(axis.figure, figures / "09_refinement_loss.png")
"""),
    markdown("""
## Your photos
Triplets in `photos_dir` and its sub-folders (layouts of `dfmvr_lib.data.photos.discover_photos`: `0/ 1/ 2/`
view folders, or `*_left / *_front / *_right` names). Pick a folder and a triplet with the widgets and press
"reconstruct"; run headless, the notebook reconstructs the first triplet and writes its mesh (PLY, mm), coefficients
and overlay to `reconstructions/` under `results_dir` (under `data_dir` when `show_photos` is off, and the overlays
are then not shown here). Warnings flag views that look like different people or swapped sides.
"""),
    code("""
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
        print(f"{group.name}: fitting loss {total.iloc[0]:.4f} (network) -> {total.iloc[-1]:.4f} ({steps} steps)")
        written = save_reconstruction(reconstructor, result, prepared.targets, photo_outputs / f"09_{group.name}.obj",
                                      files=prepared.files, mesh_formats=("ply",), warnings=warnings,
                                      title=f"{group.name}: {reconstructor.run_dir.name} + {steps} refinement steps")
        print("wrote", *written, sep="\\n  ")
        if show_photos:
            overlay_figure(result, prepared.targets, prepared.view_names, title=f"{group.name}, refined")
            plt.show()
        photo_results[group.name] = (prepared, result)

    display(triplet_chooser(photo_folder, reconstruct_group))
"""),
    code("""
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
    write_table(views, tables / "09_photo_reconstruction.csv", config)
    display(views.round(3))
"""),
    markdown("""
## Turn the face, move its first components
The reconstruction rendered by the workbook's renderer at five yaws; below, sliders for the view angle and the first
identity and expression components re-render it (live in JupyterLab; a static notebook shows the first frame). It is
the first photo triplet when `show_photos` is on, else the synthetic triplet.
"""),
    code("""
from dfmvr_lib.reconstruction import coefficient_explorer, mesh_view_figure

if photo_results and show_photos:
    shown_name, (_, shown) = next(iter(photo_results.items()))
else:
    shown_name, shown = f"synthetic test triplet {sample_id}", synthetic
figure = mesh_view_figure(model, shown.coefficients, yaws_degrees=(-60, -30, 0, 30, 60), image_size=224,
                          title=shown_name)
plots.save_figure(figure, figures / "09_reconstruction_views.png")
display(coefficient_explorer(model, shown.coefficients, image_size=224))
"""),
    markdown("""
## Against a ground-truth mesh of your face
With `ground_truth_mesh` (a PLY in mm; plus `ground_truth_landmarks`, its 7 alignment points, unless it has the
model's topology): the paper's protocol on the first photo triplet, its error map and, for model-topology meshes,
the per-region errors.
"""),
    code("""
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
    write_table(region_errors_table([error], ids=[name]), tables / "09_photo_region_errors.csv", config)
    print(f"rmse {error.rmse_mm:.3f} mm, mean {error.mean_mm:.3f} mm over {error.n_points} ground-truth points")
else:
    print("no ground_truth_mesh (or no photo reconstruction): nothing to compare with")
"""),
]

NOTEBOOKS = {"00_face_model_and_renderer.ipynb": NOTEBOOK_00, "01_data_prep.ipynb": NOTEBOOK_01,
             "02_parser_pretraining.ipynb": NOTEBOOK_02, "03_training.ipynb": NOTEBOOK_03,
             "04_comparison.ipynb": NOTEBOOK_04, "05_single_view.ipynb": NOTEBOOK_05, "06_ablation.ipynb": NOTEBOOK_06,
             "07_sensitivity.ipynb": NOTEBOOK_07, "08_robustness.ipynb": NOTEBOOK_08,
             "09_reconstruct_your_photos.ipynb": NOTEBOOK_09}


def build() -> None:
    NOTEBOOK_DIR.mkdir(exist_ok=True)
    for name, cells in NOTEBOOKS.items():
        notebook = nbformat.v4.new_notebook(cells=cells)
        for index, cell in enumerate(notebook.cells):      # stable ids: rebuilding does not churn the diff
            cell.id = f"{name[:2]}-{index:02d}"
        notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        notebook.metadata["language_info"] = {"name": "python"}
        nbformat.write(notebook, NOTEBOOK_DIR / name)
        print("wrote", NOTEBOOK_DIR / name)


if __name__ == "__main__":
    build()
