"""Face-parse network (spec section 1.1): BiSeNet with a ResNet-18 context path, 10 classes (docs/conventions.md).

- :mod:`.bisenet`: the network (input RGB in [0, 1], ImageNet normalisation inside, logits at input resolution);
- :mod:`.pretrained`: import of the public 19-class CelebAMask-HQ checkpoints, merged to 10 classes;
- :mod:`.training`: pretraining on the synthetic benchmark (resumable, reusable run directory);
- :mod:`.evaluation`: per-class and mean IoU (optionally with test-time flip averaging);
- :func:`frozen_parser` / :func:`parse_probabilities`: the frozen parser of the mask loss (gradient flows to the
  input images, not to the parameters).
"""
from __future__ import annotations

import torch

from .bisenet import BiSeNet, NUM_CLASSES, build_parser
from .pretrained import FACE_PARSING_CLASSES, celebamask19_groups, load_face_parsing_checkpoint
from .evaluation import (confusion_matrix, evaluate_parser, flip_averaged_probabilities, iou_table, mean_iou,
                         predict_labels)
from .training import ParserRun, SyntheticParsingImages, load_run_model, pretrain_parser


def frozen_parser(model: BiSeNet) -> BiSeNet:
    """Put ``model`` in eval mode with ``requires_grad_(False)`` on every parameter (in place; returns it)."""
    model.eval()
    model.requires_grad_(False)
    return model


def parse_probabilities(model: BiSeNet, images: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) in [0, 1] -> softmax probabilities (N, 10, H, W). Differentiable w.r.t. ``images`` (no
    ``no_grad``, no detach): the mask loss back-propagates through it to the render."""
    return torch.softmax(model(images, aux=False), dim=1)


__all__ = ["BiSeNet", "NUM_CLASSES", "FACE_PARSING_CLASSES", "ParserRun", "SyntheticParsingImages", "build_parser",
           "celebamask19_groups", "confusion_matrix", "evaluate_parser", "flip_averaged_probabilities", "frozen_parser",
           "iou_table", "load_face_parsing_checkpoint", "load_run_model", "mean_iou", "parse_probabilities",
           "predict_labels", "pretrain_parser"]
