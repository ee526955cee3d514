"""DF-MVR networks: involution (against a naive loop, gradcheck), regressors, fusion backbones (shapes, cross-view
interaction, unshared encoders, attention gates) and the full network (zero initialisation, gradient flow, mask
encodings, single-view inputs, channels_last + bf16). Tiny widths and 32-112 px inputs."""
import math

import pytest
import torch

from dfmvr_lib.config import get_config
from dfmvr_lib.networks import (AttentionGate, DFMVRNet, Involution, SingleImageNet, TriUNet, build_backbone,
                                build_network, build_regressor, input_channels, involution_aggregate, network_class,
                                per_view_faces)
from dfmvr_lib.networks.backbones import ViewConcatCNN, ViewConcatUNet
from dfmvr_lib.networks.heads import HEAD_NAMES, coordinate_grid
from dfmvr_lib.networks.regressors import Bottleneck, scaled_channels
from dfmvr_lib.scene import FaceCoefficients

BASE = 4            # backbone base width in the tests
REGRESSOR_WIDTH = 0.125


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def tiny_net(**kwargs) -> DFMVRNet:
    options = dict(base_width=BASE, regressor_width=REGRESSOR_WIDTH, fused_channels=8)
    options.update(kwargs)
    return DFMVRNet(**options)


def random_inputs(batch: int = 2, size: int = 32, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    images = torch.rand(batch, 3, 3, size, size, generator=generator)
    parse_maps = torch.randint(0, 10, (batch, 3, size, size), generator=generator)
    return images, parse_maps


# ----------------------------------------------------------------------------------------------------- involution
def naive_involution(x: torch.Tensor, kernel: torch.Tensor, K: int, stride: int) -> torch.Tensor:
    """Loop over output pixels and kernel taps (vectorised over batch and channels only)."""
    B, C, H, W = x.shape
    G = kernel.shape[1]
    out_h, out_w = kernel.shape[-2:]
    pad = (K - 1) // 2
    group = torch.arange(C) // (C // G)                    # group of each channel
    out = torch.zeros(B, C, out_h, out_w, dtype=x.dtype)
    for i in range(out_h):
        for j in range(out_w):
            for u in range(K):
                for v in range(K):
                    row, col = stride * i + u - pad, stride * j + v - pad
                    if 0 <= row < H and 0 <= col < W:
                        out[:, :, i, j] += kernel[:, group, u * K + v, i, j] * x[:, :, row, col]
    return out


@pytest.mark.parametrize("method", ["unfold", "shift"])
@pytest.mark.parametrize("channels,kernel_size,stride,size", [(8, 3, 1, (5, 6)), (32, 7, 1, (6, 5)),
                                                              (32, 7, 2, (7, 6)), (16, 3, 2, (5, 5))])
def test_involution_matches_naive_loop(method, channels, kernel_size, stride, size):
    torch.manual_seed(0)
    layer = Involution(channels, kernel_size, stride, method=method).double()
    x = torch.randn(2, channels, *size, dtype=torch.float64)
    kernel = layer.kernel(x)
    assert kernel.shape == (2, layer.groups, kernel_size ** 2, math.ceil(size[0] / stride), math.ceil(size[1] / stride))
    expected = naive_involution(x, kernel, kernel_size, stride)
    torch.testing.assert_close(layer(x), expected, rtol=1e-10, atol=1e-10)


def test_involution_shapes_groups_and_stride():
    layer = Involution(32, 7, stride=2)
    assert layer.groups == 2 and layer.span.out_channels == 49 * 2 and layer.reduce.out_channels == 8
    assert Involution(8).groups == 1 and Involution(64).groups == 4
    for size, expected in [((16, 16), (8, 8)), ((15, 9), (8, 5)), ((7, 7), (4, 4))]:
        assert layer(torch.randn(2, 32, *size)).shape == (2, 32, *expected)
    assert Involution(32, 7)(torch.randn(1, 32, 9, 11)).shape == (1, 32, 9, 11)
    with pytest.raises(ValueError):
        Involution(32, method="bogus")
    with pytest.raises(ValueError):
        Involution(35)                                   # 2 groups of 17.5 channels
    with pytest.raises(ValueError):
        Involution(16, kernel_size=4)


@pytest.mark.parametrize("stride", [1, 2])
def test_involution_gradcheck(stride):
    torch.manual_seed(0)
    x = torch.randn(2, 4, 5, 6, dtype=torch.float64, requires_grad=True)
    kernel = torch.randn(2, 2, 9, math.ceil(5 / stride), math.ceil(6 / stride), dtype=torch.float64,
                         requires_grad=True)
    for method in ("unfold", "shift"):
        assert torch.autograd.gradcheck(lambda a, k: involution_aggregate(a, k, 3, stride, method), (x, kernel))
    layer = Involution(4, 3, stride, group_channels=2).double().eval()
    assert torch.autograd.gradcheck(layer, (x,))


def test_involution_methods_agree_in_training_and_half_precision():
    torch.manual_seed(0)
    x = torch.randn(2, 32, 12, 10)
    kernel = torch.randn(2, 2, 49, 6, 5)
    reference = involution_aggregate(x, kernel, 7, 2, "unfold")
    torch.testing.assert_close(involution_aggregate(x, kernel, 7, 2, "shift"), reference, rtol=1e-5, atol=1e-4)
    low = involution_aggregate(x.bfloat16(), kernel.bfloat16(), 7, 2, "shift")
    assert low.dtype == torch.bfloat16
    torch.testing.assert_close(low.float(), reference, rtol=0.05, atol=0.3)


# ----------------------------------------------------------------------------------------------------- regressors
@pytest.mark.parametrize("name", ["rednet50", "resnet50"])
def test_regressor_shapes_layout_and_width(name):
    torch.manual_seed(0)
    model = build_regressor(name, in_channels=8, width=REGRESSOR_WIDTH)
    blocks = [m for m in model.modules() if isinstance(m, Bottleneck)]
    assert [len(stage) for stage in model.stages] == [3, 4, 6, 3] and len(blocks) == 16
    involutions = [m for m in model.modules() if isinstance(m, Involution)]
    if name == "rednet50":
        assert len(involutions) == 17                    # 16 bottlenecks + the stem
        assert all(inv.kernel_size == 7 for inv in involutions[1:])
        assert all(inv.channels % inv.groups == 0 and inv.channels // inv.groups <= 16 for inv in involutions)
    else:
        assert not involutions
    assert model.out_features == 4 * scaled_channels(512, REGRESSOR_WIDTH) == 256
    for size in [(64, 48), (56, 40)]:                   # 56 x 40 gives odd maps (7x5) before the last stride 2
        out = model(torch.randn(2, 8, *size))
        assert out.shape == (2, 256) and torch.isfinite(out).all()
    assert count(model) < count(build_regressor(name, 8, 0.25)) < count(build_regressor(name, 8, 0.5))
    with pytest.raises(ValueError):
        build_regressor("vgg", 8, 1.0)


@pytest.mark.parametrize("name", ["rednet50", "resnet50"])
def test_regressor_spatial_pool_keeps_where_features_are(name):
    """spatial_pool k: the feature is the globally pooled last stage (as without it) followed by the input map
    pooled to k x k; the k x k part tells a pattern on the left of the input from the same pattern on the right."""
    torch.manual_seed(0)
    plain = build_regressor(name, 8, REGRESSOR_WIDTH).eval()
    torch.manual_seed(0)
    spatial = build_regressor(name, 8, REGRESSOR_WIDTH, spatial_pool=4).eval()
    assert spatial.out_features == plain.out_features + 8 * 16
    x = torch.zeros(2, 8, 64, 64)
    x[0, :, 20:30, 4:14] = 1.0                          # the same blob, left ...
    x[1, :, 20:30, 50:60] = 1.0                         # ... and right
    with torch.no_grad():
        out, reference = spatial(x), plain(x)
    assert out.shape == (2, spatial.out_features)
    torch.testing.assert_close(out[:, :plain.out_features], reference)     # same weights, same pooled part
    grid = out[:, plain.out_features:].reshape(2, 8, 4, 4)
    assert grid[0, :, 1, 0].min() > 0 and grid[0, :, :, 1:].abs().max() == 0   # the left blob: left column only
    assert grid[1, :, 1, 3].min() > 0 and grid[1, :, :, :3].abs().max() == 0
    torch.testing.assert_close(grid[0, :, 1, 0], torch.full((8,), 10 * 10 / 256.0))   # its mean over the 16 x 16 cell
    x = torch.randn(2, 8, 64, 64, requires_grad=True)
    (spatial(x) ** 2).sum().backward()
    assert all(p.grad is not None for p in spatial.stages[0].parameters()) and x.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="spatial_pool"):
        build_regressor(name, 8, REGRESSOR_WIDTH, spatial_pool=-1)


def test_spatial_pool_reaches_every_network():
    """NetworkConfig.spatial_pool builds the heads on the wider feature, for DF-MVR and the baselines' network."""
    for backbone in ("tri_unet", "single_image"):
        config = get_config("smoke", {"network.spatial_pool": 2, "network.backbone": backbone})
        network = build_network(config)
        assert network.regressor.spatial_pool == 2
        assert network.heads["identity"].in_features == network.regressor.out_features
        images = torch.rand(1, 3, 3, 64, 64)
        coefficients = network(images, torch.zeros(1, 3, 64, 64, dtype=torch.long))
        assert coefficients.identity.shape[-1] == config.face_model.identity_components


def test_scaled_channels():
    assert [scaled_channels(c, 0.125) for c in (64, 128, 256, 512)] == [8, 16, 32, 64]
    assert [scaled_channels(c, 1.0) for c in (64, 128, 256, 512)] == [64, 128, 256, 512]
    assert scaled_channels(64, 0.01) == 8 and scaled_channels(64, 0.4) % 16 == 0


# ------------------------------------------------------------------------------------------------------ backbones
@pytest.mark.parametrize("name", ["tri_unet", "cnn", "unet"])
@pytest.mark.parametrize("size", [64, 112])
def test_backbone_shapes(name, size):
    torch.manual_seed(0)
    model = build_backbone(name, in_channels=13, base_width=BASE, fused_channels=8).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, 13, size, size))
    assert out.shape == (1, 8, size, size) and torch.isfinite(out).all()


def test_backbone_rejects_bad_inputs():
    model = TriUNet(4, BASE, 8)
    with pytest.raises(ValueError):
        model(torch.randn(1, 3, 4, 40, 40))             # 40 is not divisible by 16
    with pytest.raises(ValueError):
        model(torch.randn(1, 2, 4, 32, 32))             # two views
    with pytest.raises(ValueError):
        build_backbone("transformer", 4, BASE, 8)


def test_tri_unet_layout():
    model = TriUNet(13, base_width=BASE, fused_channels=8)
    assert len(model.encoders) == 3 and model.encoders[0].widths == (4, 8, 16, 32, 64)
    assert model.up[0].in_channels == 3 * 16 * BASE and model.up[0].out_channels == 8 * BASE
    assert [block.block[0].in_channels for block in model.decoder] == [4 * 8 * BASE, 4 * 4 * BASE, 4 * 2 * BASE,
                                                                       4 * BASE]
    assert all(len(gates) == 3 for gates in model.gates)
    assert [gates[0].inter_channels for gates in model.gates] == [16, 8, 4, 2]   # F_int = C / 2


@pytest.mark.parametrize("name", ["tri_unet", "cnn", "unet"])
def test_per_view_encoders_are_unshared(name):
    torch.manual_seed(0)
    model = build_backbone(name, 13, BASE, 8)
    branches = model.unets if name == "unet" else model.encoders
    first = [p for p in branches[0].parameters()]
    for other in branches[1:]:
        params = list(other.parameters())
        assert len(params) == len(first)
        assert not any(a is b for a, b in zip(first, params))
        assert any(not torch.equal(a, b) for a, b in zip(first, params) if a.dim() > 1)


def input_gradient(model: torch.nn.Module, inputs: torch.Tensor, output=None) -> torch.Tensor:
    inputs = inputs.clone().requires_grad_(True)
    out = model(inputs) if output is None else output(inputs)
    out.square().sum().backward()
    return inputs.grad.abs().sum(dim=(0, 2, 3, 4))      # per view


def test_tri_unet_mixes_views_before_the_output():
    """Every view drives the fused output at every pixel region; a change in one view changes it."""
    torch.manual_seed(0)
    model = TriUNet(4, BASE, 8).eval()
    inputs = torch.randn(1, 3, 4, 32, 32)
    assert (input_gradient(model, inputs) > 0).all()
    # The gradient of ONE output pixel reaches all three views (the shared decoder mixes them).
    single = input_gradient(model, inputs, lambda x: model(x)[:, :, 5, 20])
    assert (single > 0).all()
    changed = inputs.clone()
    changed[:, 2] = torch.randn(4, 32, 32)
    with torch.no_grad():
        assert not torch.allclose(model(inputs), model(changed))


def test_view_concat_unet_has_no_cross_view_interaction():
    """Ablation v2: each per-view UNet output depends on its own view only; views meet only in the final 1x1 conv."""
    torch.manual_seed(0)
    model = ViewConcatUNet(4, BASE, 8).eval()
    inputs = torch.randn(1, 3, 4, 32, 32)
    for view in range(3):
        gradient = input_gradient(model, inputs, lambda x: model.view_features(x)[:, view])
        assert gradient[view] > 0
        assert all(gradient[other] == 0 for other in range(3) if other != view)
    # Zeroing the final 1x1 weights of views B and C makes the fused output independent of B and C ...
    with torch.no_grad():
        model.head.weight[:, BASE:] = 0
        changed = inputs.clone()
        changed[:, 1:] = torch.randn(2, 4, 32, 32)
        torch.testing.assert_close(model(inputs), model(changed))
    # ... which is not so for the Tri-UNet, whose decoder mixes the views before its final 1x1 conv.
    tri = TriUNet(4, BASE, 8).eval()
    with torch.no_grad():
        assert not torch.allclose(tri(inputs), tri(changed))


def test_view_concat_cnn_uses_all_views_and_upsamples():
    torch.manual_seed(0)
    model = ViewConcatCNN(4, BASE, 8).eval()
    inputs = torch.randn(1, 3, 4, 32, 32)
    assert (input_gradient(model, inputs) > 0).all()
    assert model.head.in_channels == 3 * 16 * BASE


def test_attention_gate_scales_skip_by_psi_in_unit_interval():
    torch.manual_seed(0)
    gate = AttentionGate(gate_channels=6, skip_channels=8).eval()
    assert gate.inter_channels == 4
    g, x = torch.randn(2, 6, 5, 7), torch.randn(2, 8, 5, 7)
    psi = gate.attention(g, x)
    assert psi.shape == (2, 1, 5, 7)
    assert (psi > 0).all() and (psi < 1).all() and psi.std() > 0
    torch.testing.assert_close(gate(g, x), x * psi)


# -------------------------------------------------------------------------------------------------- the network
def test_untrained_network_predicts_mean_face_frontal_at_origin():
    torch.manual_seed(0)
    model = tiny_net()
    images, parse_maps = random_inputs(2, 32)
    for mode in (model.train(), model.eval()):
        out = mode(images, parse_maps)
        assert isinstance(out, FaceCoefficients)
        assert out.identity.shape == (2, 80) and out.expression.shape == (2, 64) and out.albedo.shape == (2, 80)
        assert out.lighting.shape == (2, 27) and out.angles.shape == (2, 3, 3) and out.translation.shape == (2, 3, 3)
        for name in ("identity", "expression", "albedo", "lighting", "angles", "translation"):
            value = getattr(out, name)
            assert value.dtype == torch.float32 and torch.equal(value, torch.zeros_like(value)), name


def test_gradient_reaches_heads_first_then_the_trunk():
    torch.manual_seed(0)
    model = tiny_net()
    images, parse_maps = random_inputs(2, 32)
    targets = {name: torch.randn_like(value) for name, value in vars(model(images, parse_maps)).items()}
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-2)

    def step():
        optimiser.zero_grad()
        out = model(images, parse_maps)
        loss = sum((getattr(out, name) - target).square().mean() for name, target in targets.items())
        loss.backward()
        return loss

    step()
    for name, head in model.heads.items():
        assert head.weight.grad.abs().sum() > 0 and head.bias.grad.abs().sum() > 0, name
    first_conv = model.backbone.encoders[0].levels[0].block[0].weight
    assert first_conv.grad is None or first_conv.grad.abs().sum() == 0   # heads are zero: nothing flows back yet
    optimiser.step()
    assert all(head.weight.abs().sum() > 0 for head in model.heads.values())
    step()
    for encoder in model.backbone.encoders:
        assert encoder.levels[0].block[0].weight.grad.abs().sum() > 0
    assert model.regressor.stem[0][0].weight.grad.abs().sum() > 0


@pytest.mark.parametrize("encoding,channels", [("onehot", 13), ("label", 4), ("none", 3)])
def test_mask_encodings(encoding, channels):
    torch.manual_seed(0)
    assert input_channels(encoding) == channels
    model = tiny_net(mask_encoding=encoding)
    images, parse_maps = random_inputs(2, 32)
    encoded = model.encode_inputs(images, parse_maps)
    assert encoded.shape == (2, 3, channels, 32, 32)
    torch.testing.assert_close(encoded[:, :, :3], images * 2 - 1)
    if encoding == "onehot":
        assert torch.equal(encoded[:, :, 3:].argmax(2), parse_maps) and torch.equal(encoded[:, :, 3:].sum(2),
                                                                                    torch.ones(2, 3, 32, 32))
    if encoding == "label":
        torch.testing.assert_close(encoded[:, :, 3], parse_maps.float() / 9)
    out = model(images, None if encoding == "none" else parse_maps)
    assert out.angles.shape == (2, 3, 3)
    with pytest.raises(ValueError):
        input_channels("rgb")


def test_parameter_count_grows_with_width():
    counts = [count(tiny_net(base_width=b, regressor_width=w)) for b, w in [(4, 0.125), (8, 0.125), (8, 0.25)]]
    assert counts[0] < counts[1] < counts[2]


def test_black_views_single_view_mode():
    torch.manual_seed(0)
    model = tiny_net()
    with torch.no_grad():
        for head in model.heads.values():
            head.weight.normal_(0, 0.01)
    images, parse_maps = random_inputs(2, 32)
    images[:, [0, 2]] = 0
    parse_maps[:, [0, 2]] = 0
    out = model(images, parse_maps)
    assert all(torch.isfinite(v).all() for v in vars(out).values())
    out.identity.sum().backward()


def test_output_scales():
    model = tiny_net(translation_scale_mm=10.0, angle_scale=0.5)
    with torch.no_grad():
        model.heads["translation"].bias.fill_(1.0)
        model.heads["angles"].bias.fill_(1.0)
    out = model(*random_inputs(2, 32))
    torch.testing.assert_close(out.translation, torch.full((2, 3, 3), 10.0))
    torch.testing.assert_close(out.angles, torch.full((2, 3, 3), 0.5))


def test_channels_last_and_bf16_autocast():
    torch.manual_seed(0)
    model = tiny_net().to(memory_format=torch.channels_last)
    with torch.no_grad():
        for head in model.heads.values():
            head.weight.normal_(0, 0.01)
    images, parse_maps = random_inputs(2, 32)
    model.eval()                                       # fixed BN statistics: bf16 vs fp32 is well conditioned
    with torch.no_grad():
        reference = model(images, parse_maps)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = model(images, parse_maps)
    error = (low.identity - reference.identity).norm() / reference.identity.norm()
    assert error < 0.05, error
    model.train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(images, parse_maps)
    assert out.identity.dtype == torch.float32 and out.translation.dtype == torch.float32
    (out.identity.square().sum() + out.angles.square().sum()).backward()
    assert all(p.grad is None or torch.isfinite(p.grad).all() for p in model.parameters())


@pytest.mark.parametrize("backbone,regressor", [("tri_unet", "rednet50"), ("cnn", "rednet50"), ("unet", "resnet50")])
def test_build_network_from_config(backbone, regressor):
    config = get_config("smoke", overrides={"network.backbone": backbone, "network.regressor": regressor,
                                            "network.base_width": BASE, "network.fused_channels": 8,
                                            "face_model.identity_components": 20})
    model = build_network(config)
    assert type(model.backbone).__name__ == {"tri_unet": "TriUNet", "cnn": "ViewConcatCNN",
                                             "unet": "ViewConcatUNet"}[backbone]
    assert type(model.regressor).__name__ == {"rednet50": "RedNet50", "resnet50": "ResNet50"}[regressor]
    assert model.translation_scale_mm == config.network.translation_scale_mm
    out = model(*random_inputs(2, config.image_size))
    assert out.identity.shape == (2, 20) and out.expression.shape == (2, config.face_model.expression_components)


def test_group_norm_replaces_every_batch_norm_and_keeps_the_identity_start():
    from dfmvr_lib.networks.normalization import replace_batch_norm

    config = get_config("smoke", {"network.normalization": "group"})
    model = build_network(config)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    norms = [m for m in model.modules() if isinstance(m, torch.nn.GroupNorm)]
    assert norms and any(float(m.weight.abs().max()) == 0.0 for m in norms)    # zero-scale residual ends kept
    model.train()
    with torch.no_grad():                     # group norm: a sample's output does not depend on the batch
        for p in model.parameters():
            p.add_(0.01 * torch.randn_like(p))
        images, parse = torch.rand(3, 3, 3, 64, 64), torch.randint(0, 10, (3, 3, 64, 64))
        alone = model(images[:1], parse[:1]).identity
        together = model(images, parse).identity[:1]
    assert torch.allclose(alone, together, atol=1e-5)
    with pytest.raises(ValueError, match="normalization"):
        replace_batch_norm(model, "layer")


def test_pose_heads_can_start_at_the_rig_yaws():
    config = get_config("smoke", {"network.initial_view_yaws_degrees": (-30.0, 0.0, 30.0)})
    model = build_network(config).eval()
    with torch.no_grad():
        coefficients = model(torch.rand(2, 3, 3, 64, 64), torch.randint(0, 10, (2, 3, 64, 64)))
    expected = torch.tensor([-math.pi / 6, 0.0, math.pi / 6])
    assert torch.allclose(coefficients.angles[:, :, 1], expected.expand(2, 3), atol=1e-6)
    assert torch.equal(coefficients.angles[:, :, 0], torch.zeros(2, 3))
    assert torch.equal(coefficients.identity, torch.zeros_like(coefficients.identity))
    with pytest.raises(ValueError, match="one yaw per view"):
        build_network(get_config("smoke", {"network.initial_view_yaws_degrees": (10.0,)}))


def test_coordinate_channels_give_pixel_centres_in_minus_one_to_one():
    grid = coordinate_grid(torch.zeros(2, 3, 5, 4, 8))
    assert grid.shape == (2, 3, 2, 4, 8)
    assert torch.allclose(grid[0, 0, 0, 0], (torch.arange(8) + 0.5) / 8 * 2 - 1)      # x along the row
    assert torch.allclose(grid[0, 0, 1, :, 0], (torch.arange(4) + 0.5) / 4 * 2 - 1)   # y down the column
    for backbone in ("tri_unet", "single_image"):
        model = build_network(get_config("smoke", {"network.coordinate_channels": True,
                                                   "network.backbone": backbone}))
        out = model(torch.rand(1, 3, 3, 64, 64), torch.randint(0, 10, (1, 3, 64, 64)))
        assert torch.isfinite(out.identity).all()


@pytest.mark.parametrize("backbone", ["tri_unet", "cnn", "unet", "single_image"])
def test_per_view_faces_agrees_with_what_the_network_outputs(backbone):
    """The configuration's answer (no network built), the class attribute and the built network's output agree:
    a multi-view network gives B faces seen in S views, a single-image network B * S faces of one view each."""
    config = get_config("smoke", {"network.backbone": backbone, "network.regressor": "resnet50"})
    answer = per_view_faces(config.network)
    assert answer is (backbone == "single_image")
    assert network_class(config.network) is (SingleImageNet if answer else DFMVRNet)
    model = build_network(config).eval()
    assert type(model) is network_class(config.network) and model.per_view_faces is answer
    B, S = 2, 3
    with torch.no_grad():
        out = model(*random_inputs(B, config.image_size))
    faces, views = (B * S, 1) if answer else (B, S)
    assert out.batch_size == faces and out.num_views == views
    assert out.angles.shape == (faces, views, 3) and out.translation.shape == (faces, views, 3)


def test_heads_keep_their_state_dict_keys():
    """Checkpoints name the heads ``heads.<name>.weight / .bias``; the names and their order stay fixed."""
    for backbone in ("tri_unet", "single_image"):
        keys = [k for k in build_network(get_config("smoke", {"network.backbone": backbone})).state_dict()
                if k.startswith("heads.")]
        assert keys == [f"heads.{name}.{part}" for name in HEAD_NAMES for part in ("weight", "bias")]
        assert HEAD_NAMES == ("identity", "expression", "albedo", "lighting", "angles", "translation")
