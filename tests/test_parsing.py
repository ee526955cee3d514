"""Face-parse network: shapes, width, frozen gradients, checkpoint import, training, augmentation, run directory,
IoU. All smoke-sized (tiny widths, 32-pixel images)."""
import json

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from dfmvr_lib.config import get_config
from dfmvr_lib.parsing import (BiSeNet, celebamask19_groups, frozen_parser, iou_table, load_face_parsing_checkpoint,
                               load_run_model, parse_probabilities, predict_labels, pretrain_parser)
from dfmvr_lib.parsing.augment import FLIP_CLASSES, augment_batch, flip_batch
from dfmvr_lib.parsing.bisenet import merge_logits
from dfmvr_lib.parsing.pretrained import FACE_PARSING_CLASSES
from dfmvr_lib.parsing.evaluation import confusion_matrix, flip_averaged_probabilities
from dfmvr_lib.parsing.training import ohem_cross_entropy, parser_loss, soft_dice_loss

WIDTH = 0.125


def test_output_shape_and_classes():
    torch.manual_seed(0)
    model = BiSeNet(width=WIDTH).eval()
    x = torch.rand(2, 3, 40, 40)
    assert model(x).shape == (2, 10, 40, 40)
    model.train()
    main, aux16, aux32 = model(x)
    assert main.shape == aux16.shape == aux32.shape == (2, 10, 40, 40)
    scaled = BiSeNet(width=WIDTH, internal_scale=1.5).eval()
    assert scaled(x).shape == (2, 10, 40, 40)
    refined = BiSeNet(width=WIDTH, refine=True)
    assert refined.eval()(x).shape == (2, 10, 40, 40)
    assert len(refined.train()(x)) == 4                  # main (refined), aux16, aux32, coarse main


def test_width_changes_parameter_count():
    def count(module):
        return sum(p.numel() for p in module.parameters())
    assert count(BiSeNet(width=0.125)) < count(BiSeNet(width=0.25)) < count(BiSeNet(width=0.5))


def test_frozen_parser_passes_gradient_to_input_only():
    torch.manual_seed(0)
    model = frozen_parser(BiSeNet(width=WIDTH))
    assert not model.training and not any(p.requires_grad for p in model.parameters())
    images = torch.rand(2, 3, 32, 32, requires_grad=True)
    probabilities = parse_probabilities(model, images)
    assert probabilities.shape == (2, 10, 32, 32)
    assert torch.allclose(probabilities.sum(1), torch.ones(2, 32, 32), atol=1e-5)
    labels = torch.randint(0, 10, (2, 32, 32))
    loss = -torch.log(probabilities.gather(1, labels[:, None]) + 1e-8).mean()
    loss.backward()
    assert images.grad is not None and images.grad.abs().sum() > 0
    assert all(p.grad is None for p in model.parameters())


def test_checkpoint_layout_loads_strictly_and_merges_19_to_10(tmp_path):
    torch.manual_seed(0)
    reference = BiSeNet(num_classes=19, width=WIDTH)
    for module in reference.modules():                    # non-trivial running statistics
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.1, 0.1)
            module.running_var.uniform_(0.5, 1.5)
    reference.eval()
    state = reference.state_dict()
    for key in ("cp.resnet.conv1.weight", "cp.resnet.layer2.0.downsample.0.weight", "cp.arm16.conv.conv.weight",
                "cp.arm16.conv_atten.weight", "cp.arm32.bn_atten.running_var", "cp.conv_head32.conv.weight",
                "cp.conv_head16.bn.weight", "cp.conv_avg.conv.weight", "ffm.convblk.conv.weight", "ffm.conv1.weight",
                "ffm.conv2.weight", "conv_out.conv.conv.weight", "conv_out.conv_out.weight",
                "conv_out16.conv_out.weight", "conv_out32.conv.bn.running_mean"):
        assert key in state, key
    assert "mean" not in state and "std" not in state
    # as written by DataParallel with an old PyTorch: 'module.' prefix, no num_batches_tracked
    saved = {"module." + k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    torch.save(saved, tmp_path / "79999_iter.pth")
    model = load_face_parsing_checkpoint(tmp_path / "79999_iter.pth", width=WIDTH)
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        raw = reference(x)
        assert torch.allclose(model(x, merge=False), raw, atol=1e-5)
        merged = model(x)
    assert merged.shape == (2, 10, 32, 32)
    groups = celebamask19_groups()
    assert sorted(i for g in groups for i in g) == list(range(19))
    name = dict(enumerate(FACE_PARSING_CLASSES))
    assert [name[i] for i in groups[1]] == ["skin", "eye_g"]
    assert [name[i] for i in groups[2]] == ["r_brow"] and [name[i] for i in groups[5]] == ["l_eye"]
    assert [name[i] for i in celebamask19_groups(l_is_image_left=True)[2]] == ["l_brow"]
    expected = torch.stack([torch.logsumexp(raw[:, g], dim=1) for g in groups], dim=1)
    assert torch.allclose(merged, expected, atol=1e-5)
    assert torch.allclose(merged, merge_logits(raw, groups), atol=1e-6)
    # a wrong layout fails loudly
    saved["extra.weight"] = torch.zeros(1)
    torch.save(saved, tmp_path / "bad.pth")
    with pytest.raises(RuntimeError):
        load_face_parsing_checkpoint(tmp_path / "bad.pth", width=WIDTH)


def _toy_batch(n=4, size=32):
    """Images whose colour blocks determine the labels."""
    generator = torch.Generator().manual_seed(1)
    labels = torch.randint(0, 10, (n, size // 8, size // 8), generator=generator)
    labels = labels.repeat_interleave(8, 1).repeat_interleave(8, 2)
    palette = torch.rand(10, 3, generator=generator)
    images = palette[labels].permute(0, 3, 1, 2).contiguous()
    return images, labels


def test_training_steps_lower_the_loss():
    torch.manual_seed(0)
    model = BiSeNet(width=WIDTH).train()
    images, labels = _toy_batch()
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(15):
        loss = parser_loss(model(images, aux=True), labels, 1.0)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0]


def test_flip_swaps_left_and_right_classes():
    labels = torch.zeros(1, 4, 6, dtype=torch.long)
    labels[0, 1, 0], labels[0, 1, 1], labels[0, 2, 0], labels[0, 2, 1] = 2, 4, 8, 6
    labels[0, 1, 5], labels[0, 2, 5] = 3, 5
    images = torch.rand(1, 3, 4, 6)
    flipped_images, flipped = flip_batch(images, labels, torch.tensor([True]))
    assert torch.equal(flipped_images, images.flip(-1))
    assert flipped[0, 1, 5] == 3 and flipped[0, 1, 4] == 5 and flipped[0, 2, 5] == 8 and flipped[0, 2, 4] == 6
    assert flipped[0, 1, 0] == 2 and flipped[0, 2, 0] == 4
    assert torch.equal(FLIP_CLASSES[FLIP_CLASSES], torch.arange(10))
    same_images, same = flip_batch(images, labels, torch.tensor([False]))
    assert torch.equal(same, labels) and torch.equal(same_images, images)
    batch, batch_labels = _toy_batch()
    out, out_labels = augment_batch(batch, batch_labels, torch.Generator().manual_seed(0))
    assert out.shape == batch.shape and out_labels.shape == batch_labels.shape and out_labels.dtype == torch.long
    assert 0 <= out.min() and out.max() <= 1 and 0 <= out_labels.min() and out_labels.max() <= 9


@pytest.fixture(scope="module")
def tiny_benchmark(tmp_path_factory):
    """A minimal benchmark folder (manifest, settings, PNGs) with 3 train samples of 32 px."""
    root = tmp_path_factory.mktemp("bench")
    images, labels = _toy_batch(9)
    rows = []
    for s in range(3):
        row = {"sample_id": f"s{s}", "split": "train"}
        for v, view in enumerate("ABC"):
            i = 3 * s + v
            (root / "samples" / f"s{s}").mkdir(parents=True, exist_ok=True)
            Image.fromarray((images[i].permute(1, 2, 0).numpy() * 255).astype(np.uint8)).save(
                root / "samples" / f"s{s}" / f"{view}.png")
            Image.fromarray(labels[i].numpy().astype(np.uint8)).save(root / "samples" / f"s{s}" / f"{view}_parse.png")
            row[f"image_{view}"] = f"samples/s{s}/{view}.png"
            row[f"parse_{view}"] = f"samples/s{s}/{view}_parse.png"
        rows.append(row)
    pd.DataFrame(rows).to_csv(root / "manifest.csv", index=False)
    (root / "settings.json").write_text(json.dumps({"settings": {"image_size": 32}}))
    return root


def _tiny_config():
    return get_config("smoke", overrides={"image_size": 32, "parser.steps": 6, "parser.checkpoint_every": 2,
                                          "parser.batch_size": 2, "parser.warmup_steps": 1})


def test_run_directory_reuse_and_resume(tiny_benchmark, tmp_path):
    config = _tiny_config()
    full = pretrain_parser(config, tiny_benchmark, runs_root=tmp_path / "runs", progress=False)
    assert full.run_dir.parent == tmp_path / "runs" and len(full.run_dir.name) == 12
    assert not full.reused and full.resumed_from == 0 and list(full.metrics["step"]) == [1, 2, 3, 4, 5, 6]
    assert list(pd.read_csv(full.run_dir / "metrics.csv").columns) == ["step", "loss", "lr", "seconds"]
    again = pretrain_parser(config, tiny_benchmark, runs_root=tmp_path / "runs", progress=False)
    assert again.reused and again.run_dir == full.run_dir and again.seconds == 0.0
    # interrupted after 3 steps: the checkpoint at step 2 survives; the resumed run ends on the same weights
    interrupted = pretrain_parser(config, tiny_benchmark, run_dir=tmp_path / "b", progress=False, stop_after=3)
    assert not interrupted.finished and not (tmp_path / "b" / "done.json").exists()
    resumed = pretrain_parser(config, tiny_benchmark, run_dir=tmp_path / "b", progress=False)
    assert resumed.resumed_from == 2 and resumed.finished and list(resumed.metrics["step"]) == [1, 2, 3, 4, 5, 6]
    for (name, a), (_, b) in zip(full.model.state_dict().items(), resumed.model.state_dict().items()):
        assert torch.allclose(a.float(), b.float(), atol=1e-6), name
    other = pretrain_parser(get_config("smoke", overrides={"image_size": 32, "parser.steps": 2,
                                                           "parser.batch_size": 2}),
                            tiny_benchmark, runs_root=tmp_path / "runs", progress=False)
    assert other.run_dir != full.run_dir


def test_iou_on_hand_made_maps():
    target = torch.tensor([[0, 0, 0], [1, 1, 2]])
    predicted = torch.tensor([[0, 0, 1], [1, 1, 0]])
    confusion = confusion_matrix(predicted, target, num_classes=4)
    table = iou_table(confusion, class_names=["a", "b", "c", "d"])
    iou = table.set_index("class")["iou"]
    assert iou["a"] == pytest.approx(2 / 4)        # TP 2, predicted 3, target 3
    assert iou["b"] == pytest.approx(2 / 3)        # TP 2, predicted 3, target 2
    assert iou["c"] == pytest.approx(0.0)          # never predicted
    assert np.isnan(iou["d"])                      # absent: left out of the mean
    assert iou["mean"] == pytest.approx((0.5 + 2 / 3 + 0.0) / 3)


class _HalfSplitModel(torch.nn.Module):
    """Flip-equivariant stub: class 1 (skin) where the image is bright, else class 2 (left brow) in the image's left
    half and class 3 (right brow) in its right half."""

    def forward(self, images, aux=False):
        n, _, h, w = images.shape
        bright = images.mean(1) > 0.5
        left = torch.arange(w) < w // 2
        logits = torch.zeros(n, 10, h, w)
        logits[:, 1] = bright.float() * 5
        logits[:, 2] = (~bright & left).float() * 5
        logits[:, 3] = (~bright & ~left).float() * 5
        return logits


def test_flip_averaging_equivariant_and_exact_for_an_equivariant_model():
    torch.manual_seed(0)
    x = torch.rand(2, 3, 32, 32)
    stub = _HalfSplitModel()
    plain = predict_labels(stub, x)
    assert torch.equal(predict_labels(stub, x, flip=True), plain)      # an equivariant model: flipping changes nothing
    assert set(plain.unique().tolist()) == {1, 2, 3}
    model = BiSeNet(width=WIDTH, refine=True).eval()
    p = flip_averaged_probabilities(model, x)
    q = flip_averaged_probabilities(model, x.flip(-1))
    assert torch.allclose(q, p[:, FLIP_CLASSES].flip(-1), atol=1e-6)      # flip-averaged = exactly equivariant
    assert torch.allclose(p.sum(1), torch.ones(2, 32, 32), atol=1e-5)
    assert torch.equal(predict_labels(model, x, flip=True), p.argmax(1))
    plain_p = torch.softmax(model(x), 1)
    assert not torch.allclose(plain_p, p, atol=1e-4)                       # a random net is not equivariant


def test_soft_dice_loss_value_and_gradient():
    logits = torch.zeros(1, 2, 1, 2, requires_grad=True)                   # p = 0.5 everywhere
    labels = torch.tensor([[[0, 1]]])
    loss = soft_dice_loss(logits, labels, eps=1.0)
    # per class: intersection 0.5, total 0.5 + 0.5 + 1 = 2 -> 1 - (2 * 0.5 + 1) / (2 + 1) = 1/3
    assert loss.item() == pytest.approx(1 / 3)
    loss.backward()
    # dL/dp_nk = -(1/2) (2 y_nk (T + e) - (2 I + e)) / (T + e)^2 = -(6 y - 2) / 18; times the softmax Jacobian (1/4)
    expected = torch.tensor([[[[-1 / 12, 1 / 12]], [[1 / 12, -1 / 12]]]])
    assert torch.allclose(logits.grad, expected, atol=1e-6)
    perfect = torch.full((1, 2, 1, 2), -20.0)
    perfect[0, 0, 0, 0] = perfect[0, 1, 0, 1] = 20.0
    assert soft_dice_loss(perfect, labels, eps=1e-6).item() == pytest.approx(0.0, abs=1e-6)
    z = torch.randn(2, 4, 3, 3, dtype=torch.double, requires_grad=True)
    y = torch.randint(0, 4, (2, 3, 3))
    assert torch.autograd.gradcheck(lambda t: soft_dice_loss(t, y), (z,))
    main = torch.randn(2, 10, 4, 4)
    y10 = torch.randint(0, 10, (2, 4, 4))
    combined = parser_loss((main, main), y10, aux_weight=0.5, dice_weight=2.0)
    ce = torch.nn.functional.cross_entropy(main, y10)
    assert combined.item() == pytest.approx(1.5 * ce.item() + 2.0 * soft_dice_loss(main, y10).item(), rel=1e-5)


def test_detail_head_shapes_init_and_layout():
    torch.manual_seed(0)
    model = BiSeNet(width=WIDTH, internal_scale=2.0, detail=(8, 8), channels_last=True)
    x = torch.rand(2, 3, 32, 32)
    main, aux16, aux32, coarse = model.train()(x)
    assert main.shape == aux16.shape == aux32.shape == coarse.shape == (2, 10, 32, 32)
    # zero-initialised residual: the detailed logits start as the coarse ones
    assert torch.allclose(main, coarse, atol=1e-5)
    model.eval()
    assert model(x).shape == (2, 10, 32, 32)
    keys = model.state_dict().keys()
    assert {"detail.reduce.conv.weight", "detail.conv4.conv.weight", "detail.conv2.conv.weight",
            "detail.conv_out.weight"} <= set(keys)
    assert not any(k.startswith("detail.") or k.startswith("refine.") for k in BiSeNet(width=WIDTH).state_dict())
    with pytest.raises(ValueError):
        BiSeNet(width=WIDTH, refine=True, detail=(8, 8))
    frozen = frozen_parser(model)
    images = torch.rand(2, 3, 32, 32, requires_grad=True)
    parse_probabilities(frozen, images)[:, 2].sum().backward()
    assert images.grad is not None and images.grad.abs().sum() > 0


def test_pretraining_with_detail_bf16_and_dice(tiny_benchmark, tmp_path):
    config = get_config("smoke", overrides={"image_size": 32, "parser.steps": 4, "parser.checkpoint_every": 2,
                                            "parser.batch_size": 2, "parser.warmup_steps": 1, "parser.refine": False,
                                            "parser.detail": (8, 8), "parser.precision": "bf16",
                                            "parser.channels_last": True, "parser.dice_weight": 1.0})
    run = pretrain_parser(config, tiny_benchmark, run_dir=tmp_path / "d", progress=False)
    assert run.finished and np.isfinite(run.metrics["loss"]).all()
    reloaded = load_run_model(run.run_dir)
    assert reloaded.detail is not None and reloaded.channels_last
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(reloaded(x), run.model(x), atol=1e-5)


def test_ohem_cross_entropy_keeps_the_hard_pixels():
    def logits_for(p):                                     # 2 classes, true class 0 with probability p
        p = torch.tensor(p, dtype=torch.double)
        return torch.stack([p.log(), (1 - p).log()]).view(1, 2, 1, -1)

    labels = torch.zeros(1, 1, 4, dtype=torch.long)
    # more pixels than fraction * N are below the 0.7 threshold: all of them count
    loss = ohem_cross_entropy(logits_for([0.9, 0.6, 0.5, 0.1]), labels, fraction=0.25)
    assert loss.item() == pytest.approx(-(np.log(0.6) + np.log(0.5) + np.log(0.1)) / 3)
    # fewer: the fraction * N hardest pixels count
    loss = ohem_cross_entropy(logits_for([0.9, 0.8, 0.75, 0.1]), labels, fraction=0.5)
    assert loss.item() == pytest.approx(-(np.log(0.75) + np.log(0.1)) / 2)
