"""Linear read-outs of what the network sees: how much of the mean-face -> ceiling gap is linearly in its inputs.

A reference for the learning-efficiency study (``bench_learning.py``): for the cpu profile's pixelface-like benchmark
(made by notebooks 01-02, or here when missing), a linear map from one kind of input to the identity and expression
coefficients is fitted in closed form (ridge regression; the best of a few penalties on the validation triplets,
optimistic by that choice) to the ground-truth coefficients of the train split (its first
``face_model.identity_components`` identity components: the reconstruction model's span), and the mean vertex
error after a similarity alignment is measured on the first 80 validation triplets, as in the study. Inputs:

- the 68 2D landmarks of the three views, each view's centred (exact projections, an oracle, and with the
  detector's error the profile trains on, ``training.landmark_noise_nme``);
- the pixels: RGB, the parser's masks (one-hot, as the network gets them), both.

The targets are 3D ground truth, which DF-MVR's weak supervision does not have: these rows are oracle references,
not methods. They say how much shape the inputs carry for a linear read-out; a network trained from scratch for a
few hundred steps is compared with them in ``learning.md``.

Usage: ``.venv/bin/python benchmarks/bench_readout.py``. Writes ``results/benchmarks/readout.csv`` and
``readout.md`` (about six minutes on 2 cores, most of it the Gram matrices of the pixel inputs).
"""
from __future__ import annotations

import datetime
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DFMVR_PRECISION", "fp32")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from dfmvr_lib import workbook  # noqa: E402
from dfmvr_lib.config import get_config  # noqa: E402
from dfmvr_lib.data.synthetic import load_manifest  # noqa: E402
from dfmvr_lib.face_model.base import NUM_PARTS  # noqa: E402
from dfmvr_lib.experiments.gap import gap_closed  # noqa: E402
from dfmvr_lib.face_model.factory import load_face_model  # noqa: E402
from dfmvr_lib.provenance import atomic_path, git_commit, write_table  # noqa: E402
from dfmvr_lib.training import aligned_vertex_error_mm, synthetic_meshes  # noqa: E402
from dfmvr_lib.training.data import TripletTensors, synthetic_triplets  # noqa: E402
from dfmvr_lib.training.input_masks import with_input_masks  # noqa: E402
from dfmvr_lib.training.landmark_noise import with_landmark_noise  # noqa: E402

from bench_learning import VALIDATION_TRIPLETS, references  # noqa: E402  (the study's validation lines)

PENALTIES = (1e-3, 1e-2, 1e-1, 1.0, 10.0)
"""Ridge penalties tried, relative to the mean squared norm of the features (the best on validation is kept)."""


def train_coefficients(root: Path, identity: int, expression: int) -> torch.Tensor:
    """(M, identity + expression) ground-truth coefficients of the train split, manifest order."""
    rows = load_manifest(root)
    values = []
    for relative in rows[rows["split"] == "train"]["coefficients"]:
        with np.load(root / relative) as data:
            values.append(np.concatenate([data["identity"][:identity], data["expression"][:expression]]))
    return torch.from_numpy(np.stack(values)).double()


def landmark_features(data: TripletTensors, count: int) -> torch.Tensor:
    """(count, S * 68 * 2): each view's 2D landmarks minus their mean."""
    landmarks = data.landmarks_2d[:count]
    return (landmarks - landmarks.mean(dim=2, keepdim=True)).reshape(count, -1).double()


def pixel_features(data: TripletTensors, count: int, rgb: bool, masks: bool) -> torch.Tensor:
    """(count, features): the views' RGB in [0, 1] and / or their one-hot masks, flattened."""
    parts = []
    if rgb:
        parts.append((data.images[:count].float() / 255.0).reshape(count, -1))
    if masks:
        parts.append(F.one_hot(data.parse_maps[:count].long(), NUM_PARTS).float().reshape(count, -1))
    return torch.cat(parts, dim=1).double()


def ridge_readout(train: torch.Tensor, targets: torch.Tensor, validation: torch.Tensor, penalty: float) -> torch.Tensor:
    """Ridge regression in its dual (kernel) form: (N, D) train features, (N, K) targets, (V, D) validation
    features -> (V, K) predictions. ``penalty`` is relative to the mean squared norm of the centred features."""
    mean = train.mean(dim=0)
    train, validation = train - mean, validation - mean
    gram = train @ train.T
    scale = gram.diagonal().mean()
    weights = torch.linalg.solve(gram + penalty * scale * torch.eye(len(gram), dtype=gram.dtype),
                                 targets - targets.mean(dim=0))
    return validation @ train.T @ weights + targets.mean(dim=0)


def main() -> None:
    torch.set_num_threads(2)
    config = get_config("cpu")
    root = workbook.benchmark(config, ROOT / "data", progress=False)
    parser_dir = workbook.parser_run(config, ROOT / "data", progress=False).run_dir
    model = load_face_model(config.face_model)
    identity, expression = model.num_identity, model.expression_basis.shape[2]
    region = model.evaluation_region
    train = with_input_masks(synthetic_triplets(root, "train", False), "parser", root, "train", parser_dir, False)
    validation = with_input_masks(synthetic_triplets(root, "validation", False), "parser", root, "validation",
                                  parser_dir, False)
    targets = train_coefficients(root, identity, expression)
    meshes = torch.stack(synthetic_meshes(root, "validation")[:VALIDATION_TRIPLETS]).to(model.mean_shape)
    lines_of_study = references(root, config.face_model)
    mean_face, ceiling = lines_of_study["mean_face_mm"], lines_of_study["ceiling_mm"]
    noise = config.training.landmark_noise_nme
    noisy_train, noisy_validation = with_landmark_noise(train, noise), with_landmark_noise(validation, noise)
    inputs = {
        "2D landmarks, exact (oracle)": (landmark_features(train, len(train)),
                                         landmark_features(validation, VALIDATION_TRIPLETS)),
        f"2D landmarks, detector error (NME {noise})": (landmark_features(noisy_train, len(train)),
                                                        landmark_features(noisy_validation, VALIDATION_TRIPLETS)),
        "RGB": (pixel_features(train, len(train), True, False),
                pixel_features(validation, VALIDATION_TRIPLETS, True, False)),
        "parser masks (one-hot)": (pixel_features(train, len(train), False, True),
                                   pixel_features(validation, VALIDATION_TRIPLETS, False, True)),
        "RGB + parser masks (the network's input)": (pixel_features(train, len(train), True, True),
                                                     pixel_features(validation, VALIDATION_TRIPLETS, True, True)),
    }
    rows = []
    for name, (features, validation_features) in inputs.items():
        for penalty in PENALTIES:
            predicted = ridge_readout(features, targets, validation_features, penalty).float()
            vertices = model.shape(predicted[:, :identity], predicted[:, identity:])
            error = float(aligned_vertex_error_mm(vertices, meshes, region).mean())
            rows.append({"input": name, "features": features.shape[1], "penalty": penalty, "network_mm": error,
                         "mean_face_mm": mean_face, "ceiling_mm": ceiling,
                         "gap_closed": gap_closed(error, mean_face, ceiling)})
            print(f"{name}, penalty {penalty:g}: {error:.3f} mm", flush=True)
    table = pd.DataFrame(rows)
    table["train_triplets"] = len(train)
    table["parser_run_dir"] = str(Path(parser_dir).relative_to(ROOT / "data"))
    output = ROOT / "results" / "benchmarks"
    write_table(table, output / "readout.csv")
    best = table.loc[table.groupby("input", sort=False)["network_mm"].idxmin()]
    lines = [f"# Linear read-outs of the network's inputs ({datetime.date.today()}, commit {git_commit()})", "",
             f"Ridge regression from each input to the ground-truth identity and expression coefficients of the "
             f"{len(train)} train triplets (3D supervision: an oracle reference, not a method), the best of "
             f"{len(PENALTIES)} penalties on the same validation triplets (optimistic by that choice); mean vertex "
             f"error after a similarity alignment on the first {VALIDATION_TRIPLETS} pixelface-like validation "
             "triplets (cpu profile). Produced by `benchmarks/bench_readout.py`; every penalty in `readout.csv`.", "",
             "| input | features | penalty | vertex error mm | mean face mm | ceiling mm | gap closed |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for _, row in best.iterrows():
        lines.append(f"| {row['input']} | {row['features']} | {row['penalty']:g} | {row['network_mm']:.3f} | "
                     f"{row['mean_face_mm']:.3f} | {row['ceiling_mm']:.3f} | {row['gap_closed']:.3f} |")
    with atomic_path(output / "readout.md") as temporary:
        Path(temporary).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
