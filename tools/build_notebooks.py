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
from dfmvr_lib.data.synthetic import PRESETS, SyntheticMultiViewDataset, benchmark_statistics, generate_benchmark
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
roots = {preset: generate_benchmark(Path(data_dir) / f"synthetic_{profile}_{preset}", config, preset)
         for preset in PRESETS}
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
from dfmvr_lib.data.synthetic import SyntheticMultiViewDataset, generate_benchmark
from dfmvr_lib.parsing import evaluate_parser, mean_iou, predict_labels, pretrain_parser
from dfmvr_lib.parsing.evaluation import compare_with_polygons
from dfmvr_lib.parsing.figures import loss_curve_figure, parse_overlay_figure
from dfmvr_lib.provenance import write_table

config = get_config(profile)
figures = Path(results_dir) / "figures"
tables = Path(results_dir) / "tables"
root = generate_benchmark(Path(data_dir) / f"synthetic_{profile}_pixelface-like", config, "pixelface-like")
config.parser
"""),
    markdown("""
## Pretraining
The run directory is keyed by a hash of the parser settings and the dataset settings: a finished run with the same
configuration is reused, an interrupted one resumes from its last checkpoint.
"""),
    code("""
run = pretrain_parser(config, root, celebamask_root=celebamask_dir, runs_root=Path(data_dir) / "runs" / "parser")
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

NOTEBOOKS = {"00_face_model_and_renderer.ipynb": NOTEBOOK_00, "01_data_prep.ipynb": NOTEBOOK_01,
             "02_parser_pretraining.ipynb": NOTEBOOK_02}


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
