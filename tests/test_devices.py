"""Device-parametrised tests: the same checks run on "cpu" always and on "cuda" where ``torch.cuda.is_available()``
(skipped otherwise). Covered: the renderer's torch backend (forward, backward, agreement with the numba CPU
backend), the differentiable render path staying float32, involution's "unfold" (CUDA) and "shift" aggregations,
one reconstruction training step under bf16 / fp16 autocast, ``reconstruct`` and the face parser.

Small models and scenes only (the smoke profile, 48-64 px): the whole file runs in well under a minute on CPU.
"""
from __future__ import annotations

import copy
import math

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from dfmvr_lib.camera import PerspectiveCamera
from dfmvr_lib.config import get_config
from dfmvr_lib.face_model.factory import load_face_model
from dfmvr_lib.losses import photo_loss
from dfmvr_lib.networks import build_network, involution_aggregate
from dfmvr_lib.parsing import BiSeNet, build_parser, frozen_parser
from dfmvr_lib.render import interpolate_torch, rasterize_torch, render_views, screen_vertices
from dfmvr_lib.scene import random_coefficients, render_faces
from dfmvr_lib.training import TripletTensors, batch_loss, make_batch, reconstruct
from dfmvr_lib.training.forward import Reconstruction, _float_coefficients
from test_networks import naive_involution
from test_renderer import posed, uv_ellipsoid

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA not available")


@pytest.fixture(params=["cpu", pytest.param("cuda", marks=CUDA)])
def device(request) -> torch.device:
    """Every test taking ``device`` runs on CPU, and on CUDA when a GPU is present."""
    return torch.device(request.param)


# ------------------------------------------------------------------------------------------------------- renderer
# Tolerances of torch backend (on ``device``) vs numba backend (CPU), measured on this scene (CPU, float32):
# triangle ids identical on every pixel; image 1.2e-7 (1 ulp at 1.0), relative depth 2.0e-7, barycentrics 2.3e-7,
# vertex gradient 1.8e-6 and colour gradient 2.8e-7 of the gradient's largest magnitude. The tolerances below leave
# a 5-10x margin over those numbers. On CUDA the torch backend runs the same eager float32 element-wise operations
# (IEEE-exact, so bit-identical) and the same float64 rasteriser; what can differ is the order of reductions
# (3-term sums, and the atomic scatter-adds of the backward's index_put over ~1000 pixels), i.e. a few ulps of the
# values and ~1e-6 of the gradients, inside the same tolerances. (Not yet measured on a GPU: none was available
# when this was written; a failure on CUDA with differences just above these bounds would mean re-measuring.)
ID_AGREEMENT = 0.999      # fraction of pixels with the same triangle id (0.999 as in test_renderer's CUDA test)
VALUE_ATOL = 1e-6         # image, barycentrics (values in [0, 1])
DEPTH_RTOL = 1e-6
GRAD_RTOL_OF_MAX = 1e-5   # gradient difference / the gradient's largest magnitude


def renderer_scene():
    """Three views (yaw -35, 0, 30 degrees) of a 1536-triangle bumpy ellipsoid on a 48-pixel image, with smooth
    colours (3, V, 3), labels (V,) and pixel weights (3, 3, 48, 48) for a loss."""
    vertices, triangles, labels = uv_ellipsoid(24, 32)
    views = posed(vertices, [-35.0, 0.0, 30.0])
    camera = PerspectiveCamera.for_image_size(48)
    colours = (0.5 + 0.4 * torch.sin(vertices / 15.0)).expand(3, -1, -1).contiguous()
    weights = torch.rand(3, 3, 48, 48, generator=torch.Generator().manual_seed(2))
    return views, triangles, labels, colours, camera, weights


def test_torch_backend_forward_and_backward_on_device(device):
    views, triangles, labels, colours, camera, weights = renderer_scene()
    v = views.to(device).requires_grad_(True)
    c = colours.to(device).requires_grad_(True)
    out = render_views(v, triangles.to(device), c, camera, vertex_labels=labels.to(device),
                       background=(0.2, 0.2, 0.2), backend="torch")
    for name in ("image", "alpha", "depth", "barycentrics", "triangle_ids", "part_labels"):
        assert getattr(out, name).device.type == device.type, name
    assert out.image.dtype == out.depth.dtype == out.barycentrics.dtype == torch.float32
    covered = out.alpha[:, 0].bool()
    assert 0.2 < covered.float().mean() < 0.8
    assert torch.equal(covered, out.triangle_ids >= 0)
    assert torch.all(out.image.permute(0, 2, 3, 1)[~covered] == torch.tensor([0.2, 0.2, 0.2], device=device))
    (out.image * weights.to(device)).sum().add(1e-3 * out.depth.sum()).backward()
    assert torch.isfinite(v.grad).all() and torch.isfinite(c.grad).all()
    # Gradients reach exactly the corners of the triangles that cover some pixel of that view.
    for n in range(3):
        seen = torch.zeros(views.shape[1], dtype=torch.bool, device=device)
        seen[triangles.to(device)[out.triangle_ids[n][out.triangle_ids[n] >= 0].unique()].reshape(-1)] = True
        assert torch.all(v.grad[n][~seen] == 0) and torch.all(c.grad[n][~seen] == 0)
        assert (v.grad[n][seen].abs().sum(-1) > 0).float().mean() > 0.9


def test_torch_backend_matches_numba_on_cpu(device):
    """The torch backend on ``device`` against the numba backend on CPU (numba runs on CPU only): forward values and
    the gradients of a loss over the pixels where both chose the same triangle."""
    views, triangles, labels, colours, camera, weights = renderer_scene()
    results = {}
    for backend, where in (("numba", torch.device("cpu")), ("torch", device)):
        v = views.to(where).requires_grad_(True)
        c = colours.to(where).requires_grad_(True)
        out = render_views(v, triangles.to(where), c, camera, vertex_labels=labels.to(where),
                           background=(0.2, 0.2, 0.2), backend=backend)
        results[backend] = (out, v, c)
    a, b = results["numba"][0], results["torch"][0]
    ids_b = b.triangle_ids.cpu()
    same = a.triangle_ids == ids_b
    assert same.float().mean() >= ID_AGREEMENT
    assert torch.equal(a.alpha, b.alpha.cpu())
    torch.testing.assert_close(b.image.detach().cpu().permute(0, 2, 3, 1)[same],
                               a.image.detach().permute(0, 2, 3, 1)[same], rtol=0, atol=VALUE_ATOL)
    torch.testing.assert_close(b.depth.detach().cpu()[same], a.depth.detach()[same], rtol=DEPTH_RTOL, atol=0)
    torch.testing.assert_close(b.barycentrics.detach().cpu()[same], a.barycentrics.detach()[same], rtol=0,
                               atol=VALUE_ATOL)
    assert torch.equal(b.part_labels.cpu()[same], a.part_labels[same])
    # Same loss on both, restricted to the pixels that agree (a pixel whose triangle differs has other gradients).
    mask = same.unsqueeze(1).float() * weights
    for backend, (out, v, c) in results.items():
        m = mask.to(v.device)
        ((out.image * m).sum() + 1e-3 * (out.depth * m[:, 0]).sum()).backward()
    for reference, other in ((results["numba"][1].grad, results["torch"][1].grad.cpu()),
                             (results["numba"][2].grad, results["torch"][2].grad.cpu())):
        scale = float(reference.abs().max())
        assert scale > 0
        assert float((other - reference).abs().max()) <= GRAD_RTOL_OF_MAX * scale


class _Float64Ops(TorchDispatchMode):
    """Records the aten operators that produce a float64 tensor."""

    def __init__(self):
        super().__init__()
        self.ops: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        result = func(*args, **(kwargs or {}))
        outputs = result if isinstance(result, (tuple, list)) else (result,)
        if any(isinstance(t, torch.Tensor) and t.dtype == torch.float64 for t in outputs):
            self.ops.append(str(func))
        return result


def test_differentiable_render_path_and_photo_loss_stay_float32(device):
    """Projection, interpolation, photo loss and their backward run without float64 for float32 inputs. (The
    rasteriser, without gradient, works in float64 on purpose: see dfmvr_lib.render.rasterize.)"""
    views, triangles, labels, colours, camera, _ = renderer_scene()
    v = views.to(device).requires_grad_(True)
    c = colours.to(device).requires_grad_(True)
    ids = rasterize_torch(screen_vertices(v, camera).detach(), triangles.to(device), 48)
    target = torch.rand(3, 3, 48, 48, generator=torch.Generator().manual_seed(3)).to(device)
    with _Float64Ops() as recorder:
        screen = screen_vertices(v, camera)
        image, depth, bary, _, alpha = interpolate_torch(screen, c, triangles.to(device), ids, labels.to(device))
        loss = photo_loss(image, target, alpha[:, 0], alpha[:, 0] > 0, torch.ones(3, 48, 48, device=device))
        loss.backward()
    assert torch.isfinite(loss) and v.grad.abs().sum() > 0
    assert recorder.ops == []
    # The recorder does see float64 work (so an empty list above means something): the rasteriser's.
    with _Float64Ops() as recorder:
        rasterize_torch(screen.detach(), triangles.to(device), 48)
    assert recorder.ops


# ----------------------------------------------------------------------------------------------------- involution
@pytest.mark.parametrize("kernel_size,stride,size", [(3, 1, (5, 6)), (7, 2, (7, 6))])
def test_involution_unfold_matches_naive_loop_and_shift(device, kernel_size, stride, size):
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(2, 8, *size, dtype=torch.float64, generator=generator)
    out_h, out_w = math.ceil(size[0] / stride), math.ceil(size[1] / stride)
    kernel = torch.randn(2, 2, kernel_size ** 2, out_h, out_w, dtype=torch.float64, generator=generator)
    expected = naive_involution(x, kernel, kernel_size, stride)
    xd, kd = x.to(device), kernel.to(device)
    unfold = involution_aggregate(xd, kd, kernel_size, stride, "unfold")
    shift = involution_aggregate(xd, kd, kernel_size, stride, "shift")
    assert unfold.device.type == device.type and unfold.shape == (2, 8, out_h, out_w)
    torch.testing.assert_close(unfold.cpu(), expected, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(shift.cpu(), expected, rtol=1e-10, atol=1e-10)
    # "auto" is "unfold" on CUDA and "shift" elsewhere (bit-identical to the chosen one).
    auto = involution_aggregate(xd, kd, kernel_size, stride)
    assert torch.equal(auto, unfold if device.type == "cuda" else shift)


@pytest.mark.parametrize("method", ["unfold", "shift"])
@pytest.mark.parametrize("stride", [1, 2])
def test_involution_gradcheck_on_device(device, method, stride):
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(1, 4, 5, 4, dtype=torch.float64, generator=generator).to(device).requires_grad_(True)
    kernel = torch.randn(1, 2, 9, math.ceil(5 / stride), math.ceil(4 / stride), dtype=torch.float64,
                         generator=generator).to(device).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a, k: involution_aggregate(a, k, 3, stride, method), (x, kernel))


# Low precision, measured on CPU for this input (max |output| 27.4): largest error against float64 evaluated on the
# same rounded inputs, relative to max |output|: bf16 unfold 2.6e-3, shift 2.2e-3 (bf16 half-ulp at 16-32 is
# 2.3e-3 of 27.4: the error is the output rounding); fp16 unfold 3.9e-4, shift 2.6e-4. Bounds: 1e-2 and 1e-3.
LOW_PRECISION_BOUND = {torch.bfloat16: 1e-2, torch.float16: 1e-3}


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
@pytest.mark.parametrize("method", ["unfold", "shift"])
def test_involution_low_precision_on_device(device, method, dtype):
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(2, 32, 12, 10, generator=generator).to(dtype)
    kernel = torch.randn(2, 2, 49, 6, 5, generator=generator).to(dtype)
    reference = involution_aggregate(x.double(), kernel.double(), 7, 2, "shift")
    out = involution_aggregate(x.to(device), kernel.to(device), 7, 2, method)
    assert out.dtype == dtype and torch.isfinite(out).all()
    error = (out.cpu().double() - reference).abs().max() / reference.abs().max()
    assert error <= LOW_PRECISION_BOUND[dtype]


# ------------------------------------------------------------------------------------ network, training, parser
@pytest.fixture(scope="module")
def smoke():
    """The smoke profile's config, face model (CPU), camera and two rendered training triplets (in memory)."""
    config = get_config("smoke")
    model = load_face_model(config.face_model)
    camera = PerspectiveCamera.from_config(config)
    yaws = torch.tensor([-0.6, 0.0, 0.6])
    coefficients = random_coefficients(model, 2, yaws, torch.Generator().manual_seed(0), identity_scale=0.5,
                                       expression_scale=0.3, pose_jitter_radians=0.05)
    with torch.no_grad():
        face = render_faces(model, coefficients, camera, background=(0.3, 0.3, 0.3))
    size = config.image_size
    visibility = face.landmark_visibility()
    data = TripletTensors(
        images=(face.views("image").clamp(0, 1) * 255).round().to(torch.uint8),
        parse_maps=face.views("part_labels").to(torch.uint8), landmarks_2d=face.landmarks_2d,
        landmark_visibility=visibility, view_present=torch.ones(2, 3, dtype=torch.bool),
        landmarks_3d=face.vertices[:, model.landmark_101])
    assert data.images.shape == (2, 3, 3, size, size) and bool(visibility.any())
    return config, model, camera, data


def _step(config, model, camera, data, device, precision, steps: int = 2):
    """``steps`` training steps as the loop does them (reconstruct -> batch_loss -> backward -> Adam step) under
    ``precision`` ("bf16" through ``reconstruct``; "fp16": the network under float16 autocast, renderer and losses
    in float32). Two steps by default: the coefficient heads start at zero (the untrained network predicts the mean
    face), so the first step's gradient reaches the heads only and the second one reaches the whole network.
    Returns the loss terms and parameter gradients of every step, the network before and after, the output dtypes
    of the first convolution and the last prediction."""
    torch.manual_seed(0)
    network = build_network(config).to(device).train()
    before = copy.deepcopy(network)
    model = copy.deepcopy(model).to(device)
    parser = frozen_parser(build_parser(config.parser).to(device))
    batch = make_batch(data, torch.arange(1), device=device)    # one triplet keeps the CPU run short
    conv = next(m for m in network.modules() if isinstance(m, torch.nn.Conv2d))
    dtypes = []
    hook = conv.register_forward_hook(lambda module, inputs, output: dtypes.append(output.dtype))
    optimiser = torch.optim.Adam(network.parameters(), lr=1e-3)
    all_terms, all_grads = [], []
    for _ in range(steps):
        if precision == "bf16":
            prediction = reconstruct(network, model, camera, batch.network_images, batch.network_parse_maps,
                                     precision="bf16")
        else:
            with torch.autocast(device.type, dtype=torch.float16):
                coefficients = network(batch.network_images, batch.network_parse_maps)
            coefficients = _float_coefficients(coefficients)
            prediction = Reconstruction(coefficients, render_faces(model, coefficients, camera))
        terms = batch_loss(config.losses, prediction, batch, model, parser, camera=camera)
        optimiser.zero_grad(set_to_none=True)
        terms.total.backward()
        all_terms.append(terms)
        all_grads.append([p.grad.clone() for p in network.parameters() if p.grad is not None])
        optimiser.step()
    hook.remove()
    return all_terms, all_grads, before, network, dtypes, prediction


@pytest.mark.parametrize("precision", ["bf16", pytest.param("fp16", marks=CUDA)])
def test_training_step_under_autocast(device, smoke, precision):
    config, model, camera, data = smoke
    if precision == "fp16" and device.type != "cuda":
        pytest.skip("fp16 autocast is for CUDA")
    all_terms, all_grads, before, after, dtypes, prediction = _step(config, model, camera, data, device, precision)
    assert dtypes and all(d == {"bf16": torch.bfloat16, "fp16": torch.float16}[precision] for d in dtypes)
    assert prediction.render.render.image.dtype == torch.float32       # the renderer always runs in float32
    assert prediction.render.render.image.device.type == device.type
    for terms in all_terms:
        assert torch.isfinite(terms.total) and terms.total > 0
        for name in ("photo", "mask", "landmark_2d", "landmark_3d"):
            assert torch.isfinite(getattr(terms, name)) and getattr(terms, name) > 0, name
    n_params = sum(1 for _ in after.parameters())
    for grads in all_grads:
        assert len(grads) >= 0.9 * n_params
        assert all(torch.isfinite(g).all() for g in grads)
    nonzero = [sum(bool(g.abs().sum() > 0) for g in grads) for grads in all_grads]
    assert 0 < nonzero[0] < nonzero[1] and nonzero[1] >= 0.5 * len(all_grads[1])
    changed = [not torch.equal(p0, p1) for p0, p1 in zip(before.parameters(), after.parameters())]
    assert sum(changed) >= 0.5 * len(changed)
    assert all(torch.isfinite(p).all() for p in after.parameters())


def test_reconstruct_on_device(device, smoke):
    config, model, camera, data = smoke
    torch.manual_seed(0)
    network = build_network(config).to(device).eval()
    model = copy.deepcopy(model).to(device)
    batch = make_batch(data, torch.arange(2), device=device)
    with torch.no_grad():
        prediction = reconstruct(network, model, camera, batch.network_images, batch.network_parse_maps)
    render = prediction.render.render
    assert render.image.device.type == device.type and prediction.vertices.device.type == device.type
    assert prediction.coefficients.identity.shape == (2, config.face_model.identity_components)
    assert render.image.shape == (6, 3, config.image_size, config.image_size)
    # An untrained network predicts the mean face in front of the camera, seen in every view.
    torch.testing.assert_close(prediction.vertices, model.mean_shape.expand(2, -1, -1), rtol=0, atol=1e-4)
    assert (render.alpha.mean((1, 2, 3)) > 0.1).all()
    if device.type == "cuda":          # same prediction on CPU: the same mean face renders to the same picture
        cpu = reconstruct(network.cpu(), model.cpu(), camera, batch.network_images.cpu(),
                          batch.network_parse_maps.cpu())
        same = cpu.render.render.triangle_ids == render.triangle_ids.cpu()
        assert same.float().mean() >= ID_AGREEMENT
        assert (cpu.render.render.image - render.image.cpu()).abs().max() < 1e-3


def test_face_parser_forward_on_device(device, smoke):
    config, _, _, data = smoke
    torch.manual_seed(0)
    images = (data.images[0].float() / 255).to(device)
    # The smoke profile's parser (channels-last layout), as the mask loss uses it: eval mode, fp32 and bf16.
    parser = build_parser(config.parser).to(device).eval()
    with torch.no_grad():
        logits = parser(images)
        with torch.autocast(device.type, dtype=torch.bfloat16):
            low = parser(images)
    assert logits.shape == (3, 10, config.image_size, config.image_size) and logits.device.type == device.type
    assert torch.isfinite(logits).all() and torch.isfinite(low).all()
    assert (low.float().argmax(1) == logits.argmax(1)).float().mean() > 0.9
    if device.type == "cuda":
        # Against CPU with TF32 off (cuDNN would otherwise round convolution inputs to 10-bit mantissas).
        with torch.no_grad(), torch.backends.cudnn.flags(enabled=True, allow_tf32=False):
            logits = parser(images)
        reference = copy.deepcopy(parser).cpu()(images.cpu())
        assert (logits.cpu() - reference).abs().max() <= 1e-4 * reference.abs().max()
    # Training mode: main and auxiliary heads, and a backward to the input. The contiguous layout here: on this
    # workbook's AMX CPU, torch 2.13.0+cpu crashes (segfault / "double free") in the float32 backward of the
    # channels-last BiSeNet in training mode (oneDNN; fine with ONEDNN_MAX_CPU_ISA=AVX2 and under bf16 autocast).
    trainable = BiSeNet(10, width=config.parser.width, detail=config.parser.detail).to(device).train()
    x = images.clone().requires_grad_(True)
    outputs = trainable(x)
    assert len(outputs) >= 3
    for head in outputs:
        assert head.shape == (3, 10, config.image_size, config.image_size) and torch.isfinite(head).all()
    sum(head.square().mean() for head in outputs).backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    grads = [q.grad for q in trainable.parameters() if q.grad is not None]
    assert len(grads) == sum(1 for _ in trainable.parameters()) and all(torch.isfinite(g).all() for g in grads)
