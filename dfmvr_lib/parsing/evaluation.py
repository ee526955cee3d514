"""Parser evaluation: confusion matrix and per-class IoU.

IoU of class k = TP / (TP + FP + FN) over all pixels of all images; the mean IoU averages the 10 classes (the 9
face classes and background), skipping a class that appears neither in the ground truth nor in the predictions.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from ..face_model.base import PART_NAMES
from .augment import FLIP_CLASSES
from .bisenet import NUM_CLASSES

MEAN_ROW = "mean"


def confusion_matrix(predicted: torch.Tensor, target: torch.Tensor, num_classes: int = NUM_CLASSES,
                     valid: torch.Tensor | None = None) -> torch.Tensor:
    """(K, K) int64 counts, rows = target class, columns = predicted class (``valid``: optional pixel mask)."""
    predicted, target = predicted.reshape(-1).long(), target.reshape(-1).long()
    if valid is not None:
        keep = valid.reshape(-1).bool()
        predicted, target = predicted[keep], target[keep]
    return torch.bincount(target * num_classes + predicted, minlength=num_classes ** 2).view(num_classes, num_classes)


def iou_table(confusion: torch.Tensor, class_names=None) -> pd.DataFrame:
    """Per-class IoU (NaN when a class is in neither map) + a final ``mean`` row (``class_id`` -1)."""
    confusion = confusion.double()
    k = confusion.shape[0]
    names = list(class_names) if class_names is not None else [str(n) for n in PART_NAMES[:k]]
    tp = confusion.diag()
    union = confusion.sum(0) + confusion.sum(1) - tp
    iou = torch.where(union > 0, tp / union.clamp_min(1), torch.full_like(tp, float("nan"))).numpy()
    frame = pd.DataFrame({"class_id": np.arange(k), "class": names, "iou": iou,
                          "target_pixels": confusion.sum(1).long().numpy(),
                          "predicted_pixels": confusion.sum(0).long().numpy()})
    mean = pd.DataFrame({"class_id": [-1], "class": [MEAN_ROW], "iou": [float(np.nanmean(iou))],
                         "target_pixels": [int(confusion.sum())], "predicted_pixels": [int(confusion.sum())]})
    return pd.concat([frame, mean], ignore_index=True)


def mean_iou(table: pd.DataFrame) -> float:
    return float(table.loc[table["class"] == MEAN_ROW, "iou"].iloc[0])


def flip_averaged_probabilities(model, images: torch.Tensor) -> torch.Tensor:
    """Test-time flip averaging: softmax of ``model(images)`` averaged with that of the horizontally flipped images,
    flipped back with the left / right classes swapped back (:data:`~dfmvr_lib.parsing.augment.FLIP_CLASSES`)."""
    plain = torch.softmax(model(images, aux=False), dim=1)
    flipped = torch.softmax(model(images.flip(-1), aux=False), dim=1)
    flipped = flipped[:, FLIP_CLASSES.to(flipped.device)].flip(-1)
    return 0.5 * (plain + flipped)


@torch.no_grad()
def predict_labels(model, images: torch.Tensor, batch_size: int = 16, flip: bool = False) -> torch.Tensor:
    """(N, 3, H, W) in [0, 1] -> (N, H, W) argmax labels (eval mode); ``flip``: test-time flip averaging
    (:func:`flip_averaged_probabilities`)."""
    was_training = model.training
    model.eval()
    out = []
    for i in range(0, images.shape[0], batch_size):
        batch = images[i:i + batch_size]
        scores = flip_averaged_probabilities(model, batch) if flip else model(batch, aux=False)
        out.append(scores.argmax(1))
    model.train(was_training)
    return torch.cat(out)


def evaluate_parser(model, dataset, batch_size: int = 16, max_items: int | None = None,
                    flip: bool = False) -> pd.DataFrame:
    """Per-class IoU and mean IoU of ``model`` on ``dataset``: items are multi-view samples (``images`` (S, 3, H, W),
    ``parse_maps``, ``view_present``; every present view counts) or single images (``image``, ``parse_map``).
    ``flip``: test-time flip averaging (:func:`predict_labels`)."""
    confusion = torch.zeros(NUM_CLASSES, NUM_CLASSES, dtype=torch.int64)
    count = len(dataset) if max_items is None else min(len(dataset), max_items)
    images, labels = [], []

    def flush():
        if images:
            x, y = torch.cat(images), torch.cat(labels)
            confusion.add_(confusion_matrix(predict_labels(model, x, batch_size, flip=flip), y))
            images.clear()
            labels.clear()

    for index in range(count):
        item = dataset[index]
        if hasattr(item, "images"):
            present = item.view_present.bool()
            images.append(item.images[present])
            labels.append(item.parse_maps[present])
        else:
            images.append(item.image[None])
            labels.append(item.parse_map[None])
        if sum(x.shape[0] for x in images) >= 4 * batch_size:
            flush()
    flush()
    return iou_table(confusion)


__all__ = ["confusion_matrix", "evaluate_parser", "flip_averaged_probabilities", "iou_table", "mean_iou",
           "predict_labels", "MEAN_ROW"]


def agreement_table(predicted: torch.Tensor, reference: torch.Tensor) -> pd.DataFrame:
    """Compare two label maps (e.g. the network's prediction and landmark-polygon masks of real photos): the
    per-class IoU table of :func:`iou_table` plus a ``pixel agreement`` row (fraction of equal pixels)."""
    table = iou_table(confusion_matrix(predicted, reference))
    agreement = float((predicted.reshape(-1) == reference.reshape(-1)).double().mean())
    row = pd.DataFrame({"class_id": [-2], "class": ["pixel agreement"], "iou": [agreement],
                        "target_pixels": [int(reference.numel())], "predicted_pixels": [int(predicted.numel())]})
    return pd.concat([table, row], ignore_index=True)


__all__.append("agreement_table")


def compare_with_polygons(model, photos) -> tuple[pd.DataFrame, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The parser against the landmark-polygon masks of prepared photos
    (:class:`dfmvr_lib.data.photos.PreparedPhoto`: ``image`` (H, W, 3) uint8, ``mask`` (H, W)).

    Returns ``(agreement_table, images (N, 3, H, W) in [0, 1], polygon masks (N, H, W), predictions (N, H, W))``.
    """
    if not photos:
        raise ValueError("compare_with_polygons needs at least one prepared photo")
    images = torch.stack([torch.from_numpy(p.image).permute(2, 0, 1).float() / 255.0 for p in photos])
    polygons = torch.stack([torch.from_numpy(p.mask) for p in photos])
    predicted = predict_labels(model, images)
    return agreement_table(predicted, polygons), images, polygons, predicted
