"""Benchmark of the landmark detector on real photos (fixtures, development only).

1. Normalised mean error (300-W practice: mean point-to-point error / outer-eye-corner distance, iBUG 36-45) on
   ``../shared/fixtures/landmarks68/image_0010.png`` against its ``.pts`` ground truth (1-based pixel indices,
   converted with ``-1 + 0.5``: :func:`dfmvr_lib.data.landmarks.read_pts`).
2. Which views of the real multi-view fixtures (``real_multiview/*``) the detector finds a face in, and with
   which stage (dlib HOG, or the CNN fallback).

Usage: ``.venv/bin/python benchmarks/bench_landmarks.py [--detector auto|dlib|fan] [--csv PATH]``.
Prints both tables and writes ``results/benchmarks/landmarks_nme.csv`` (+ ``landmarks_nme.md``), provenance
columns included. The fixtures are not part of the repository: without them the script says so and exits.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dfmvr_lib.data.landmarks import (DlibLandmarkDetector, FanLandmarkDetector, NoFaceFound,  # noqa: E402
                                      default_landmark_detector, normalised_mean_error, read_pts)
from dfmvr_lib.provenance import atomic_path, provenance, write_table  # noqa: E402

FIXTURES = ROOT.parent / "shared" / "fixtures"
VIEW_OF = {"0": "A (left)", "1": "B (front)", "2": "C (right)",
           "left": "A (left)", "front": "B (front)", "right": "C (right)"}


def build_detector(name: str):
    if name == "dlib":
        return DlibLandmarkDetector()
    if name == "fan":
        return FanLandmarkDetector()
    return default_landmark_detector()


def timed_detect(detector, image):
    start = time.perf_counter()
    try:
        detection = detector.detect(image)
    except NoFaceFound:
        detection = None
    return detection, time.perf_counter() - start


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--detector", default="dlib", choices=["auto", "dlib", "fan"])
    parser.add_argument("--csv", type=Path, default=ROOT / "results" / "benchmarks" / "landmarks_nme.csv")
    args = parser.parse_args(argv)
    if not FIXTURES.is_dir():
        print(f"fixtures not found at {FIXTURES}: nothing to measure")
        return 0
    detector = build_detector(args.detector)
    rows = []

    image_path = FIXTURES / "landmarks68" / "image_0010.png"
    truth = read_pts(image_path.with_suffix(".pts"))
    image = np.asarray(Image.open(image_path).convert("RGB"))
    detector.detect(image)  # warm-up (first call loads / allocates)
    detection, seconds = timed_detect(detector, image)
    nme = normalised_mean_error(detection.landmarks, truth) if detection is not None else float("nan")
    inter_ocular = float(np.linalg.norm(truth[36] - truth[45]))
    rows.append({"task": "nme_300w", "file": f"landmarks68/{image_path.name}", "view": "",
                 "image_size": f"{image.shape[1]}x{image.shape[0]}", "face_found": detection is not None,
                 "stage": detection.detector if detection else "", "nme": nme,
                 "mean_error_px": nme * inter_ocular, "inter_ocular_px": inter_ocular,
                 "score": detection.score if detection else float("nan"), "seconds": seconds})

    views = sorted((FIXTURES / "real_multiview").glob("*/*.jpg")) + \
        sorted((FIXTURES / "real_multiview").glob("*/*/*.png"))
    for path in views:
        image = np.asarray(Image.open(path).convert("RGB"))
        detection, seconds = timed_detect(detector, image)
        key = path.parent.name if path.parent.name in VIEW_OF else path.stem
        rows.append({"task": "multiview_detection", "file": str(path.relative_to(FIXTURES)),
                     "view": VIEW_OF.get(key, ""), "image_size": f"{image.shape[1]}x{image.shape[0]}",
                     "face_found": detection is not None, "stage": detection.detector if detection else "",
                     "nme": float("nan"), "mean_error_px": float("nan"), "inter_ocular_px": float("nan"),
                     "score": detection.score if detection else float("nan"), "seconds": seconds})

    frame = pd.DataFrame(rows)
    frame.insert(0, "detector", getattr(detector, "name", type(detector).__name__))
    shown = frame.drop(columns=["mean_error_px", "inter_ocular_px"])
    print(shown.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    found = frame[frame.task == "multiview_detection"]
    print(f"\nNME on the 300-W fixture: {nme:.4f}; faces found in {int(found.face_found.sum())} of {len(found)} "
          "multi-view fixture views")

    write_table(frame, args.csv)
    stamp = provenance()
    markdown = [
        "# Landmark detector on the real-photo fixtures",
        "",
        f"Detector: `{frame.detector.iloc[0]}`. NME = mean point-to-point error / outer-eye-corner distance "
        "(iBUG 36-45), 300-W practice; ground truth from the `.pts` file (1-based, converted by -1 + 0.5 to "
        "pixel-centre coordinates).",
        "",
        f"**NME on `landmarks68/image_0010.png`: {nme:.4f}** ({nme * inter_ocular:.1f} px mean error, "
        f"inter-ocular {inter_ocular:.0f} px).",
        "",
        "| file | view | face found | stage | score | seconds |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for row in found.itertuples():
        markdown.append(f"| {row.file} | {row.view} | {'yes' if row.face_found else 'no'} | {row.stage} | "
                        f"{row.score:.2f} | {row.seconds:.3f} |")
    markdown += ["", f"git {stamp['git_commit']}, {stamp['date']}, {stamp['host']}.", ""]
    with atomic_path(args.csv.with_suffix(".md")) as temporary:
        temporary.write_text("\n".join(markdown))
    print(f"wrote {args.csv} and {args.csv.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
