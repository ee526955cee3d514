"""Losses of spec section 2: hand-computed values, gradient flow, degenerate inputs."""
import math

import pytest
import torch

from dfmvr_lib.camera import PerspectiveCamera, euler_to_rotation
from dfmvr_lib.config import LossConfig, get_config, loss_preset
from dfmvr_lib.face_model.factory import load_face_model
from dfmvr_lib.losses import (landmark_2d_loss, landmark_3d_loss, landmark_weights, lighting_loss, mask_loss,
                              part_weight_map, photo_loss, reconstruction_loss, reflectance_loss, regularisation_loss)
from dfmvr_lib.parsing import BiSeNet, frozen_parser
from dfmvr_lib.scene import FaceCoefficients, render_faces
from dfmvr_lib.similarity import apply_similarity, similarity_transform


def test_part_weight_map_dilates_parts_only():
    parse = torch.ones(1, 9, 9, dtype=torch.long)
    parse[0, 0, :] = 0                      # a background row
    parse[0, 4, 4] = 6                      # one nose pixel
    weights = part_weight_map(parse, dilation_px=1, values=LossConfig().weight_map_values)
    assert torch.all(weights[0, 3:6, 3:6] == 254)
    assert weights[0, 1, 1] == 128 and weights[0, 0, 5] == 32
    assert (weights == 254).sum() == 9


def test_photo_loss_hand_computed_weighted_mean():
    target = torch.zeros(1, 3, 4, 4)
    rendered = torch.zeros(1, 3, 4, 4)
    rendered[0, 0, :2] = 0.1                # rows 0-1: distance 0.1
    rendered[0, 1, 2:] = 0.5                # rows 2-3: distance 0.5
    weights = torch.full((1, 4, 4), 128.0)
    weights[0, :2] = 254.0
    alpha = torch.ones(1, 4, 4)
    alpha[0, :, 3] = 0.0                    # one column not covered by the render
    face = torch.ones(1, 4, 4, dtype=torch.bool)
    loss = photo_loss(rendered, target, alpha, face, weights)
    expected = (254 * 0.1 * 6 + 128 * 0.5 * 6) / (254 * 6 + 128 * 6)
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    # a view with weight 0 does not count
    two = photo_loss(torch.cat([rendered, rendered + 1]), torch.cat([target, target]), alpha.repeat(2, 1, 1),
                     face.repeat(2, 1, 1), weights.repeat(2, 1, 1), view_weight=torch.tensor([1.0, 0.0]))
    assert two.item() == pytest.approx(expected, rel=1e-5)


def test_photo_loss_gradient_finite_at_zero_difference():
    rendered = torch.zeros(1, 3, 4, 4, requires_grad=True)
    loss = photo_loss(rendered, torch.zeros(1, 3, 4, 4), torch.ones(1, 4, 4), torch.ones(1, 4, 4, dtype=torch.bool),
                      torch.ones(1, 4, 4))
    loss.backward()
    assert torch.isfinite(rendered.grad).all()


class _ColourParser(torch.nn.Module):
    """Logits = a fixed linear map of the RGB values (a stand-in whose cross-entropy is easy to compute)."""

    def __init__(self):
        super().__init__()
        self.weight = torch.zeros(10, 3)
        self.weight[1, 0] = 4.0             # red pixels -> class 1

    def forward(self, images, aux=False):
        return torch.einsum("kc,nchw->nkhw", self.weight, images)


def test_mask_loss_hand_computed():
    parser = _ColourParser()
    rendered = torch.zeros(1, 3, 2, 2)
    rendered[:, 0] = 1.0                    # red render
    alpha = torch.ones(1, 2, 2)
    labels = torch.ones(1, 2, 2, dtype=torch.long)
    loss = mask_loss(parser, rendered, alpha, torch.zeros(1, 3, 2, 2), labels)
    expected = -math.log(math.exp(4.0) / (math.exp(4.0) + 9.0))
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    # uncovered pixels show the input image (black here): uniform logits -> log(10)
    alpha[0, 0, 0] = 0.0
    loss = mask_loss(parser, rendered, alpha, torch.zeros(1, 3, 2, 2), labels)
    assert loss.item() == pytest.approx((3 * expected + math.log(10.0)) / 4, rel=1e-5)


def test_mask_loss_gradient_reaches_coefficients_through_frozen_parser():
    torch.manual_seed(0)
    config = get_config("smoke")
    model = load_face_model(config.face_model)
    camera = PerspectiveCamera.for_image_size(48)
    parser = frozen_parser(BiSeNet(width=0.125))
    coefficients = FaceCoefficients.neutral(model, 1, yaws=torch.tensor([0.0, 0.4]))
    coefficients.identity.requires_grad_(True)
    coefficients.albedo.requires_grad_(True)
    coefficients.angles.requires_grad_(True)
    render = render_faces(model, coefficients, camera)
    target_parse = render.render.part_labels.clone()
    target_parse[target_parse == 6] = 1                    # disagree somewhere so the loss is not at a minimum
    loss = mask_loss(parser, render.render.image, render.render.alpha[:, 0], torch.rand(2, 3, 48, 48), target_parse)
    loss.backward()
    for name in ("identity", "albedo", "angles"):
        grad = getattr(coefficients, name).grad
        assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0, name
    assert all(p.grad is None for p in parser.parameters())


def test_landmark_2d_loss_hand_computed():
    target = torch.zeros(2, 68, 2)
    predicted = target + torch.tensor([3.0, 4.0])           # 5 px everywhere
    plain = landmark_2d_loss(predicted, target, image_size=224)
    assert plain.item() == pytest.approx(5.0)
    assert landmark_2d_loss(predicted, target, image_size=112).item() == pytest.approx(10.0)   # 224-pixel units
    weights = landmark_weights(LossConfig().heavy_landmarks, LossConfig().heavy_landmark_weight)
    assert weights.sum().item() == 57 + 20 * 11
    weighted = landmark_2d_loss(predicted, target, weights=weights)
    assert weighted.item() == pytest.approx(5.0 * (57 + 220) / 68)
    visibility = torch.ones(2, 68, dtype=torch.bool)
    visibility[:, 34:] = False
    predicted_far = predicted.clone()
    predicted_far[:, 34:] += 100.0                          # invisible points do not count
    assert landmark_2d_loss(predicted_far, target, visibility).item() == pytest.approx(5.0)


def _random_similarity(batch: int, generator: torch.Generator):
    angles = (torch.rand(batch, 3, generator=generator) - 0.5) * 2.0
    rotation = euler_to_rotation(angles.double())
    scale = 0.5 + torch.rand(batch, generator=generator).double()
    translation = torch.randn(batch, 3, generator=generator).double() * 30.0
    return scale, rotation, translation


def test_similarity_transform_recovers_known_transform():
    generator = torch.Generator().manual_seed(1)
    source = torch.randn(3, 12, 3, generator=generator).double() * 40.0
    scale, rotation, translation = _random_similarity(3, generator)
    target = apply_similarity(source, scale, rotation, translation)
    s, r, t = similarity_transform(source, target)
    assert torch.allclose(s, scale, atol=1e-9)
    assert torch.allclose(r, rotation, atol=1e-9)
    assert torch.allclose(t, translation, atol=1e-7)
    assert torch.allclose(torch.linalg.det(r), torch.ones(3, dtype=torch.float64))


def test_landmark_3d_loss_known_offset_and_invariance():
    generator = torch.Generator().manual_seed(2)
    target = torch.randn(2, 101, 3, generator=generator).double() * 40.0
    alignment = torch.tensor([19, 22, 25, 28, 13, 31, 37])
    scale, rotation, translation = _random_similarity(2, generator)
    moved = apply_similarity(target, scale, rotation, translation)    # same shape, another frame
    assert landmark_3d_loss(moved, target, alignment).item() == pytest.approx(0.0, abs=1e-8)
    offset = target.clone()
    others = torch.ones(101, dtype=torch.bool)
    others[alignment] = False
    offset[:, others, 2] += 3.0                                      # 3 mm on the 94 non-alignment points
    assert landmark_3d_loss(offset, target, alignment).item() == pytest.approx(3.0 * 94 / 101, rel=1e-9)


def test_landmark_3d_loss_gradcheck_through_svd():
    generator = torch.Generator().manual_seed(3)
    target = torch.randn(1, 10, 3, generator=generator).double() * 10
    predicted = (target + torch.randn(1, 10, 3, generator=generator).double()).requires_grad_(True)
    alignment = torch.arange(7)
    assert torch.autograd.gradcheck(lambda p: landmark_3d_loss(p, target, alignment), (predicted,))


@pytest.mark.parametrize("case", ["coincident", "collinear", "planar", "symmetric"])
def test_landmark_3d_loss_degenerate_inputs_have_finite_gradients(case):
    target = torch.randn(1, 12, 3, dtype=torch.float64)
    if case == "coincident":
        predicted = torch.zeros(1, 12, 3, dtype=torch.float64)
    elif case == "collinear":
        predicted = torch.linspace(0, 1, 12, dtype=torch.float64)[None, :, None] * torch.tensor([1.0, 2.0, 3.0])
    elif case == "planar":
        predicted = torch.randn(1, 12, 3, dtype=torch.float64)
        predicted[..., 2] = 0.0
    else:                                       # repeated singular values: a regular configuration onto itself
        square = torch.tensor([[1.0, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1], [0, 0, -1], [0, 0, 0]],
                              dtype=torch.float64)
        predicted = torch.cat([square, torch.zeros(5, 3, dtype=torch.float64)])[None]
        target = predicted.clone()
    predicted = predicted.clone().requires_grad_(True)
    loss = landmark_3d_loss(predicted, target, torch.arange(7))
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(predicted.grad).all()
    if case == "symmetric":
        assert loss.item() == pytest.approx(0.0, abs=1e-9)


def test_regularisation_and_priors_hand_computed():
    coefficients = FaceCoefficients(identity=torch.full((2, 80), 0.5), expression=torch.ones(2, 64),
                                    albedo=torch.full((2, 80), 2.0), lighting=torch.zeros(2, 27),
                                    angles=torch.zeros(2, 3, 3), translation=torch.zeros(2, 3, 3))
    expected = 1.0 * 80 * 0.25 + 0.8 * 64 + 0.017 * 80 * 4
    paper = LossConfig()
    regular = regularisation_loss(coefficients, paper.identity, paper.expression, paper.albedo)
    assert regular.item() == pytest.approx(expected)
    grey = torch.ones(1, 27) * 0.3
    assert lighting_loss(grey).item() == pytest.approx(0.0)
    coloured = torch.zeros(1, 27)
    coloured[0, 0] = 3.0                       # red DC only: channel mean 1 -> (2^2 + 1 + 1)
    assert lighting_loss(coloured).item() == pytest.approx(6.0)
    albedo = torch.tensor([[[0.2, 0.2, 0.2], [0.4, 0.4, 0.4], [9.0, 9.0, 9.0]]])
    skin = torch.tensor([True, True, False])
    assert reflectance_loss(albedo, skin).item() == pytest.approx(3 * 0.01)


def _loss_inputs(N=3, H=16):
    torch.manual_seed(0)
    return dict(
        coefficients=FaceCoefficients(identity=torch.randn(1, 80), expression=torch.randn(1, 64),
                                      albedo=torch.randn(1, 80), lighting=torch.randn(1, 27),
                                      angles=torch.zeros(1, N, 3), translation=torch.zeros(1, N, 3)),
        rendered=torch.rand(N, 3, H, H), render_alpha=torch.ones(N, H, H),
        predicted_landmarks_2d=torch.rand(N, 68, 2) * H, images=torch.rand(N, 3, H, H),
        parse_maps=torch.randint(0, 10, (N, H, H)), landmarks_2d=torch.rand(N, 68, 2) * H,
        landmark_visibility=torch.ones(N, 68, dtype=torch.bool), view_weight=torch.ones(N),
        predicted_landmarks_3d=torch.randn(1, 101, 3) * 30, landmarks_3d=torch.randn(1, 101, 3) * 30,
        alignment_indices=torch.arange(7), parser=_ColourParser())


def test_reconstruction_loss_total_is_the_weighted_sum_and_variants_switch_terms_off():
    inputs = _loss_inputs()
    config = LossConfig()
    terms = reconstruction_loss(config, **inputs)
    expected = (4 * terms.photo + 3 * terms.mask + 0.02 * terms.landmark_2d + 1 * terms.landmark_3d
                + 3e-4 * terms.regularisation)
    assert terms.total.item() == pytest.approx(expected.item(), rel=1e-6)
    assert terms.mask > 0 and terms.landmark_3d > 0
    no_3d = reconstruction_loss(LossConfig(use_landmark_3d=False), **inputs)
    assert no_3d.landmark_3d.item() == 0.0
    assert no_3d.total.item() == pytest.approx((terms.total - terms.landmark_3d).item(), rel=1e-6)
    late = reconstruction_loss(config, mask_active=False, **inputs)
    assert late.mask.item() == 0.0
    authors = loss_preset("authors_code")
    assert authors.photo == 24 and authors.mask == 1 and authors.reflectance == 5 and authors.lighting == 10
    with_priors = reconstruction_loss(authors, albedo=torch.rand(1, 5, 3), skin=torch.ones(5, dtype=torch.bool),
                                      **inputs)
    assert with_priors.reflectance > 0 and with_priors.lighting > 0
    with pytest.raises(ValueError, match="unknown loss preset"):
        loss_preset("nope")
