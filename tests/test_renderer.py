"""Tests of the differentiable renderer (dfmvr_lib.render): coverage, z-buffer, perspective-correct interpolation,
analytic gradients, backend agreement."""
from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch

from dfmvr_lib.camera import PerspectiveCamera, apply_pose
from dfmvr_lib.render import (NumbaInterpolation, interpolate_torch, rasterize_numba, render_views,
                              screen_vertices)

BACKENDS = ["numba", "torch"]


def uv_ellipsoid(n_lat: int = 24, n_lon: int = 32, radii=(75.0, 100.0, 60.0)):
    """Closed UV ellipsoid (counter-clockwise seen from outside) with a bump (nose) towards +z.

    Returns vertices (V, 3) float32 mm, triangles (F, 3) long, labels (V,) long in 0..9.
    """
    theta = torch.linspace(0.0, math.pi, n_lat + 2, dtype=torch.float64)[1:-1]
    phi = torch.arange(n_lon, dtype=torch.float64) * (2.0 * math.pi / n_lon)
    t, p = torch.meshgrid(theta, phi, indexing="ij")
    direction = torch.stack([torch.sin(t) * torch.sin(p), torch.cos(t), torch.sin(t) * torch.cos(p)], -1)
    bump = 1.0 + 0.2 * torch.exp(-(p ** 2 + (t - math.pi / 2) ** 2) / 0.05)
    points = (direction * torch.tensor(radii, dtype=torch.float64) * bump.unsqueeze(-1)).reshape(-1, 3)
    points = torch.cat([points, torch.tensor([[0.0, radii[1], 0.0], [0.0, -radii[1], 0.0]], dtype=torch.float64)])
    grid = torch.arange(n_lat * n_lon).reshape(n_lat, n_lon)
    right = torch.roll(grid, -1, dims=1)
    a, b, c, d = grid[:-1], right[:-1], grid[1:], right[1:]
    tris = [torch.stack([a, c, b], -1).reshape(-1, 3), torch.stack([b, c, d], -1).reshape(-1, 3),
            torch.stack([torch.full_like(grid[0], n_lat * n_lon), grid[0], right[0]], -1),
            torch.stack([torch.full_like(grid[-1], n_lat * n_lon + 1), right[-1], grid[-1]], -1)]
    labels = torch.arange(points.shape[0]) % 10
    return points.float(), torch.cat(tris).long(), labels


def posed(vertices: torch.Tensor, yaws_degrees, pitch: float = 0.1) -> torch.Tensor:
    yaws = torch.tensor(yaws_degrees, dtype=torch.float32) * math.pi / 180.0
    angles = torch.stack([torch.full_like(yaws, pitch), yaws, torch.zeros_like(yaws)], -1)
    return apply_pose(vertices.unsqueeze(0).expand(len(yaws_degrees), -1, -1), angles,
                      torch.zeros(len(yaws_degrees), 3))


# A camera with simple numbers: u = 10 + X / 10, v = 10 - Y / 10 at Z = 0 (depth 1000 mm).
SIMPLE = PerspectiveCamera(image_size=20, focal_length=100.0, camera_distance_mm=1000.0)


def inside_triangle(points: np.ndarray, corners: np.ndarray) -> np.ndarray:
    """Reference point-in-triangle test (strict, float64) in pixel coordinates. points (P,2), corners (3,2)."""
    def side(p, a, b):
        return (b[0] - a[0]) * (p[:, 1] - a[1]) - (b[1] - a[1]) * (p[:, 0] - a[0])
    s = [side(points, corners[k], corners[(k + 1) % 3]) for k in range(3)]
    return ((s[0] > 0) & (s[1] > 0) & (s[2] > 0)) | ((s[0] < 0) & (s[1] < 0) & (s[2] < 0))


def pixel_centres(size: int) -> np.ndarray:
    jj, ii = np.meshgrid(np.arange(size) + 0.5, np.arange(size) + 0.5)
    return np.stack([jj.ravel(), ii.ravel()], 1)  # (u, v) per pixel in row-major order


# ------------------------------------------------------------------------------------------------ analytic scenes
@pytest.mark.parametrize("backend", BACKENDS)
def test_square_covers_expected_pixel_centres(backend):
    # X in [-42, 38] -> u in [5.8, 13.8] -> columns 6..13; Y in [-27, 33] -> v in [6.7, 12.7] -> rows 7..12.
    vertices = torch.tensor([[[-42.0, -27.0, 0.0], [38.0, -27.0, 0.0], [38.0, 33.0, 0.0], [-42.0, 33.0, 0.0]]])
    triangles = torch.tensor([[0, 1, 2], [0, 2, 3]])
    colours = torch.tensor([[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 1.0, 1.0]]])
    out = render_views(vertices, triangles, colours, SIMPLE, backend=backend)
    expected = torch.zeros(20, 20)
    expected[7:13, 6:14] = 1.0
    assert torch.equal(out.alpha[0, 0], expected)
    assert out.alpha.shape == (1, 1, 20, 20) and out.image.shape == (1, 3, 20, 20)
    covered = expected.bool()
    assert torch.allclose(out.depth[0][covered], torch.tensor(1000.0), atol=1e-3)
    assert torch.all(out.depth[0][~covered] == 0) and torch.all(out.triangle_ids[0][~covered] == -1)
    assert torch.all(out.image[0][:, ~covered] == 0) and torch.all(out.barycentrics[0][~covered] == 0)
    # Which half of the square: compare with an independent point-in-triangle test (off the diagonal).
    screen = SIMPLE.project(vertices[0]).numpy()
    centres = pixel_centres(20)
    in0 = inside_triangle(centres, screen[[0, 1, 2]]).reshape(20, 20)
    in1 = inside_triangle(centres, screen[[0, 2, 3]]).reshape(20, 20)
    ids = out.triangle_ids[0].numpy()
    assert in0.sum() > 10 and in1.sum() > 10
    assert np.all(ids[in0] == 0) and np.all(ids[in1] == 1)
    # Barycentrics sum to one and interpolate colours.
    assert torch.allclose(out.barycentrics[0][covered].sum(-1), torch.tensor(1.0), atol=1e-5)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("near_first", [True, False])
def test_nearer_triangle_wins(backend, near_first):
    far = [[-80.0, -70.0, -100.0], [60.0, -70.0, -100.0], [-80.0, 70.0, -100.0]]  # depth 1100
    near = [[-20.0, -50.0, 50.0], [70.0, -50.0, 50.0], [70.0, 60.0, 50.0]]  # depth 950
    vertices = torch.tensor([near + far] if near_first else [far + near])
    triangles = torch.tensor([[0, 1, 2], [3, 4, 5]])
    near_id = 0 if near_first else 1
    colours = torch.zeros(1, 6, 3)
    colours[0, 3 * near_id:3 * near_id + 3] = torch.tensor([1.0, 0.0, 0.0])
    out = render_views(vertices, triangles, colours, SIMPLE, backend=backend)
    centres = pixel_centres(20)
    in_near = inside_triangle(centres, SIMPLE.project(torch.tensor(near)).numpy()).reshape(20, 20)
    in_far = inside_triangle(centres, SIMPLE.project(torch.tensor(far)).numpy()).reshape(20, 20)
    overlap = in_near & in_far
    assert overlap.sum() > 5 and (in_far & ~in_near).sum() > 5
    ids, depth = out.triangle_ids[0].numpy(), out.depth[0].numpy()
    assert np.all(ids[in_near] == near_id) and np.all(ids[in_far & ~in_near] == 1 - near_id)
    np.testing.assert_allclose(depth[in_near], 950.0, rtol=1e-6)
    np.testing.assert_allclose(depth[in_far & ~in_near], 1100.0, rtol=1e-6)
    assert np.all(out.image[0, 0].numpy()[in_near] > 0.999)


@pytest.mark.parametrize("backend", BACKENDS)
def test_triangles_behind_or_crossing_the_camera_are_skipped(backend):
    front = [[-30.0, -30.0, 0.0], [30.0, -30.0, 0.0], [0.0, 30.0, 0.0]]
    behind = [[-30.0, -30.0, 1100.0], [30.0, -30.0, 1100.0], [0.0, 30.0, 1100.0]]  # depth -100: all behind
    crossing = [[-50.0, -50.0, 500.0], [50.0, -50.0, 500.0], [0.0, 50.0, 1200.0]]  # one vertex behind
    for scene, expect_pixels in ((behind, False), (crossing, False), (front, True)):
        out = render_views(torch.tensor([scene]), torch.tensor([[0, 1, 2]]), torch.ones(1, 3, 3), SIMPLE,
                           backend=backend)
        assert bool(out.alpha.any()) == expect_pixels
        assert torch.all(torch.isfinite(out.image)) and torch.all(torch.isfinite(out.depth))
    # A valid triangle is still drawn next to skipped ones, and gradients stay finite.
    vertices = torch.tensor([front + behind + crossing], requires_grad=True)
    out = render_views(vertices, torch.tensor([[0, 1, 2], [3, 4, 5], [6, 7, 8]]), torch.ones(1, 9, 3), SIMPLE,
                       backend=backend)
    assert set(out.triangle_ids.unique().tolist()) == {-1, 0}
    (out.image.sum() + out.depth.sum()).backward()
    assert torch.all(torch.isfinite(vertices.grad)) and torch.all(vertices.grad[0, 3:] == 0)


@pytest.mark.parametrize("backend", BACKENDS)
def test_perspective_correct_interpolation_on_a_slanted_plane(backend):
    camera = PerspectiveCamera.for_image_size(32)
    slope_x, slope_y = 0.8, 0.3
    corners = torch.tensor([[-150.0, -150.0], [150.0, -150.0], [150.0, 150.0], [-150.0, 150.0]])
    z = slope_x * corners[:, 0] + slope_y * corners[:, 1]
    vertices = torch.cat([corners, z.unsqueeze(1)], 1).unsqueeze(0)
    triangles = torch.tensor([[0, 1, 2], [0, 2, 3]])
    # Colours = (X, Y, Z): linear functions of 3D position.
    out = render_views(vertices, triangles, vertices.clone(), camera, backend=backend)
    assert bool(out.alpha.all())
    centres = torch.from_numpy(pixel_centres(32))
    c, f, D = camera.principal_point, camera.focal_length, camera.camera_distance_mm
    # Ray through the pixel: X = (u - c) d / f, Y = (c - v) d / f, Z = D - d on the plane Z = sx X + sy Y.
    depth = D / (1.0 + slope_x * (centres[:, 0] - c) / f + slope_y * (c - centres[:, 1]) / f)
    depth = depth.reshape(32, 32).float()
    assert torch.allclose(out.depth[0], depth, rtol=1e-5)
    assert torch.allclose(out.image[0, 2], D - depth, atol=2e-3)
    point = camera.unproject(centres.float(), depth.reshape(-1))
    assert torch.allclose(out.image[0, 0].reshape(-1), point[:, 0], atol=2e-3)
    assert torch.allclose(out.image[0, 1].reshape(-1), point[:, 1], atol=2e-3)
    # Affine (screen-space) interpolation would be visibly wrong here, so the test can tell them apart.
    screen = camera.project(vertices[0]).double()
    affine_depth = []
    for k, (u, v) in enumerate(centres.tolist()):
        tri = triangles[int(out.triangle_ids[0].reshape(-1)[k])]
        p = screen[tri]
        m = torch.stack([p[1] - p[0], p[2] - p[0]], 1)
        w = torch.linalg.solve(m, torch.tensor([u, v], dtype=torch.float64) - p[0])
        d = D - vertices[0, tri, 2].double()
        affine_depth.append(float((1 - w.sum()) * d[0] + w[0] * d[1] + w[1] * d[2]))
    assert (torch.tensor(affine_depth).reshape(32, 32) - depth.double()).abs().max() > 1.0


# ------------------------------------------------------------------------------------------------------ gradients
def small_scene(dtype=torch.float64):
    """Two views of a small bumpy mesh on a 12-pixel image: screen vertices, colours, triangles, triangle ids."""
    vertices, triangles, _ = uv_ellipsoid(5, 6)
    camera = PerspectiveCamera(image_size=12, focal_length=100.0, camera_distance_mm=1000.0)
    views = posed(vertices, [-20.0, 30.0]).to(dtype)
    screen = screen_vertices(views, camera)
    ids = rasterize_numba(screen, triangles, 12)
    colours = torch.rand(2, vertices.shape[0], 3, dtype=dtype, generator=torch.Generator().manual_seed(1))
    return views, screen, colours, triangles, ids, camera


@pytest.mark.parametrize("implementation", ["numba", "torch"])
def test_interpolation_gradcheck_fixed_visibility(implementation):
    _, screen, colours, triangles, ids, _ = small_scene()
    assert (ids >= 0).float().mean() > 0.3
    screen = screen.detach().requires_grad_(True)
    colours = colours.detach().requires_grad_(True)

    def function(s, c):
        if implementation == "numba":
            image, depth, bary, _, _ = NumbaInterpolation.apply(s, c, triangles, ids, None, None)
        else:
            image, depth, bary, _, _ = interpolate_torch(s, c, triangles, ids)
        return image, depth, bary

    assert torch.autograd.gradcheck(function, (screen, colours), eps=1e-6, atol=1e-6, rtol=1e-4)


def test_render_views_gradcheck_through_camera():
    views, _, colours, triangles, _, camera = small_scene()
    views = views.detach().requires_grad_(True)
    colours = colours.detach().requires_grad_(True)

    def function(v, c):
        out = render_views(v, triangles, c, camera, background=(0.1, 0.2, 0.3), backend="numba")
        return out.image, out.depth, out.barycentrics

    assert torch.autograd.gradcheck(function, (views, colours), eps=1e-6, atol=1e-6, rtol=1e-4)


def test_numba_and_torch_gradients_agree():
    vertices, triangles, labels = uv_ellipsoid(30, 40)
    views = posed(vertices, [-40.0, 0.0, 25.0])
    camera = PerspectiveCamera.for_image_size(64)
    weights = torch.rand(3, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    grads = {}
    for backend in BACKENDS:
        v = views.clone().requires_grad_(True)
        c = (0.5 + 0.3 * torch.sin(vertices / 20.0)).expand(3, -1, -1).clone().requires_grad_(True)
        out = render_views(v, triangles, c, camera, vertex_labels=labels, background=(0.2, 0.2, 0.2),
                           backend=backend)
        loss = (out.image * weights).sum() + 1e-3 * out.depth.sum() + out.barycentrics[..., 0].sum()
        loss.backward()
        grads[backend] = (v.grad, c.grad)
    for a, b in zip(grads["numba"], grads["torch"]):
        assert a.abs().max() > 0
        assert torch.allclose(a, b, rtol=1e-3, atol=1e-4 * float(b.abs().max()))


@pytest.mark.parametrize("backend", BACKENDS)
def test_image_gradient_reaches_visible_vertices_only(backend):
    vertices = torch.tensor([[[-42.0, -27.0, 0.0], [38.0, -27.0, 0.0], [38.0, 33.0, 0.0],
                              [-42.0, 33.0, -50.0], [60.0, 60.0, -80.0], [90.0, 60.0, -80.0], [60.0, 90.0, -80.0]]],
                            requires_grad=True)
    triangles = torch.tensor([[0, 1, 2], [0, 2, 3], [4, 5, 6]])
    colours = torch.rand(1, 7, 3, generator=torch.Generator().manual_seed(3)).requires_grad_(True)
    out = render_views(vertices, triangles, colours, SIMPLE, backend=backend)
    assert out.triangle_ids[0, 11, 12] == 0  # pixel (row 11, column 12) lies in triangle 0
    out.image[0, :, 11, 12].sum().backward()
    for vertex in (0, 1, 2):
        assert vertices.grad[0, vertex].abs().sum() > 0 and colours.grad[0, vertex].abs().sum() > 0
    assert torch.all(vertices.grad[0, 3:] == 0) and torch.all(colours.grad[0, 3:] == 0)
    # The colour gradient of one pixel is its barycentric weights.
    assert torch.allclose(colours.grad[0, :3, 0], out.barycentrics[0, 11, 12].detach(), atol=1e-6)


# -------------------------------------------------------------------------------------------- landmarks, outputs
@pytest.mark.parametrize("backend", BACKENDS)
def test_projected_vertex_lands_on_its_rendered_surface(backend):
    vertices, triangles, labels = uv_ellipsoid(40, 60)
    camera = PerspectiveCamera.for_image_size(224)
    views = posed(vertices, [-30.0, 10.0])
    colours = torch.ones(2, vertices.shape[0], 3)
    out = render_views(views, triangles, colours, camera, vertex_labels=labels, backend=backend)
    # Vertices facing the camera (the ellipsoid's normal is close to the direction from its centre).
    facing = torch.nn.functional.normalize(views, dim=-1)[..., 2] > 0.7
    rng = np.random.default_rng(4)
    for n in range(2):
        for vertex in rng.choice(torch.nonzero(facing[n]).squeeze(1).numpy(), 15, replace=False):
            vertex = int(vertex)
            u, v = camera.project(views[n, vertex]).tolist()
            row, col = int(math.floor(v)), int(math.floor(u))
            tri = int(out.triangle_ids[n, row, col])
            ring = triangles[(triangles == vertex).any(1)].unique()
            assert tri >= 0 and set(triangles[tri].tolist()) & set(ring.tolist()), (n, vertex, tri)
            # Depth within the depth range of the vertex's neighbourhood (the pixel centre is < 1 px away).
            ring_depth = camera.depth(views[n, ring])
            assert ring_depth.min() - 1e-3 <= out.depth[n, row, col] <= ring_depth.max() + 1e-3
            # Shift the head so that the vertex projects exactly onto that pixel centre: the covering triangle
            # then has the vertex as a corner, with barycentric weight 1, and the depth is the vertex's depth.
            d = float(camera.depth(views[n, vertex]))
            shift = torch.tensor([(col + 0.5 - u) * d / camera.focal_length,
                                  -(row + 0.5 - v) * d / camera.focal_length, 0.0])
            moved = render_views(views[n:n + 1] + shift, triangles, colours[:1], camera, backend=backend)
            corners = triangles[moved.triangle_ids[0, row, col]].tolist()
            assert vertex in corners
            assert float(moved.barycentrics[0, row, col, corners.index(vertex)]) > 0.999
            assert abs(float(moved.depth[0, row, col]) - d) < 1e-2


@pytest.mark.parametrize("backend", BACKENDS)
def test_part_labels_background_and_single_view(backend):
    vertices, triangles, labels = uv_ellipsoid(20, 30)
    camera = PerspectiveCamera.for_image_size(48)
    views = posed(vertices, [-25.0, 0.0, 35.0])
    colours = torch.rand(3, vertices.shape[0], 3, generator=torch.Generator().manual_seed(5))
    background = torch.rand(3, 3, 48, 48, generator=torch.Generator().manual_seed(6))
    out = render_views(views, triangles, colours, camera, vertex_labels=labels, background=background,
                       backend=backend)
    covered = out.alpha[:, 0].bool()
    assert 0.1 < covered.float().mean() < 0.9
    # Background where uncovered, both for an image and for an RGB triple.
    assert torch.equal(out.image.permute(0, 2, 3, 1)[~covered], background.permute(0, 2, 3, 1)[~covered])
    plain = render_views(views, triangles, colours, camera, background=(0.25, 0.5, 0.75), backend=backend)
    assert torch.allclose(plain.image[1, :, 0, 0], torch.tensor([0.25, 0.5, 0.75]))
    assert plain.part_labels is None
    # Part label = label of the covering triangle's corner with the largest barycentric weight.
    corners = triangles[out.triangle_ids.clamp(min=0)]
    best = corners.gather(-1, out.barycentrics.argmax(-1, keepdim=True)).squeeze(-1)
    assert torch.equal(out.part_labels[covered], labels[best][covered])
    assert torch.all(out.part_labels[~covered] == 0) and out.part_labels.dtype == torch.int64
    assert len(out.part_labels[covered].unique()) == 10
    # One view alone (the numba kernels then split rows into bands) matches the batch.
    single = render_views(views[1:2], triangles, colours[1:2], camera, vertex_labels=labels, backend=backend)
    assert torch.equal(single.triangle_ids[0], out.triangle_ids[1])
    assert torch.allclose(single.depth[0], out.depth[1])
    assert not out.alpha.requires_grad and not out.triangle_ids.is_floating_point()


def test_numba_and_torch_backends_agree():
    vertices, triangles, labels = uv_ellipsoid(60, 80)
    camera = PerspectiveCamera.for_image_size(96)
    views = posed(vertices, [-45.0, -15.0, 0.0, 20.0, 45.0])
    colours = (0.5 + 0.4 * torch.sin(vertices / 15.0)).expand(5, -1, -1)
    a = render_views(views, triangles, colours, camera, vertex_labels=labels, backend="numba")
    b = render_views(views, triangles, colours, camera, vertex_labels=labels, backend="torch")
    same = a.triangle_ids == b.triangle_ids
    assert same.float().mean() > 0.999
    assert torch.equal(a.alpha, b.alpha)
    assert torch.allclose(a.image, b.image, atol=1e-3)
    assert torch.allclose(a.depth[same], b.depth[same], rtol=1e-5)
    assert torch.allclose(a.barycentrics[same], b.barycentrics[same], atol=1e-4)
    assert torch.equal(a.part_labels[same], b.part_labels[same])


def test_backend_selection_errors():
    vertices = torch.zeros(1, 3, 3)
    with pytest.raises(ValueError, match="unknown render backend"):
        render_views(vertices, torch.tensor([[0, 1, 2]]), torch.ones(1, 3, 3), SIMPLE, backend="opengl")
    with pytest.raises(ValueError, match="vertex_colours"):
        render_views(vertices, torch.tensor([[0, 1, 2]]), torch.ones(1, 4, 3), SIMPLE)


# ------------------------------------------------------------------------------------------- optional backends
@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA not available")
def test_cuda_matches_cpu():
    vertices, triangles, labels = uv_ellipsoid(40, 60)
    camera = PerspectiveCamera.for_image_size(64)
    views = posed(vertices, [-30.0, 0.0, 30.0])
    colours = (0.5 + 0.4 * torch.sin(vertices / 15.0)).expand(3, -1, -1).contiguous()
    cpu = render_views(views, triangles, colours, camera, vertex_labels=labels)
    v = views.cuda().requires_grad_(True)
    gpu = render_views(v, triangles.cuda(), colours.cuda(), camera, vertex_labels=labels.cuda())
    assert gpu.image.is_cuda
    same = (gpu.triangle_ids.cpu() == cpu.triangle_ids)
    assert same.float().mean() > 0.999
    assert torch.allclose(gpu.image.cpu(), cpu.image, atol=1e-3)
    gpu.image.sum().backward()
    assert torch.isfinite(v.grad).all() and v.grad.abs().sum() > 0


def test_pytorch3d_backend_matches():
    pytest.importorskip("pytorch3d")
    vertices, triangles, labels = uv_ellipsoid(40, 60)
    camera = PerspectiveCamera.for_image_size(64)
    views = posed(vertices, [-30.0, 0.0, 30.0])
    colours = (0.5 + 0.4 * torch.sin(vertices / 15.0)).expand(3, -1, -1).contiguous()
    ours = render_views(views, triangles, colours, camera, vertex_labels=labels, backend="numba")
    theirs = render_views(views, triangles, colours, camera, vertex_labels=labels, backend="pytorch3d")
    same = ours.triangle_ids == theirs.triangle_ids
    assert same.float().mean() > 0.99
    assert torch.allclose(ours.depth[same], theirs.depth[same], rtol=1e-4)
    assert torch.allclose(ours.barycentrics[same], theirs.barycentrics[same], atol=1e-3)
    assert torch.allclose(ours.image[same.unsqueeze(1).expand_as(ours.image)],
                          theirs.image[same.unsqueeze(1).expand_as(ours.image)], atol=1e-3)


def test_pytorch3d_backend_missing_gives_clear_error():
    try:
        import pytorch3d  # noqa: F401
        pytest.skip("pytorch3d is installed")
    except ImportError:
        pass
    with pytest.raises(ImportError, match="pytorch3d"):
        render_views(torch.zeros(1, 3, 3), torch.tensor([[0, 1, 2]]), torch.ones(1, 3, 3), SIMPLE,
                     backend="pytorch3d")


# Tolerances of the pytorch3d backend against numba (measured with pytorch3d 0.7.9, CPU build, on the scene of
# test_pytorch3d_backend_parity_labels_alpha_and_gradients: 2400 triangles, 64 px, 3 views): triangle ids, alpha and
# part labels identical on every pixel; barycentrics differ by up to 5.1e-5 and the image by 1.1e-5 (pytorch3d
# computes its float32 barycentrics with another formula), relative depth by 4.9e-7; gradients of a loss on image and
# depth differ by 5.8e-5 (vertices) and 3.8e-6 (colours) of their largest magnitude. Bounds: about 5x those.
P3D_BARY_ATOL = 2.5e-4
P3D_IMAGE_ATOL = 5e-5
P3D_DEPTH_RTOL = 2.5e-6
P3D_VERTEX_GRAD = 3e-4        # of the largest |gradient|
P3D_COLOUR_GRAD = 2e-5


def test_pytorch3d_backend_parity_labels_alpha_and_gradients():
    pytest.importorskip("pytorch3d")
    vertices, triangles, labels = uv_ellipsoid(30, 40)
    camera = PerspectiveCamera.for_image_size(64)
    views = posed(vertices, [-30.0, 0.0, 30.0])
    colours = (0.5 + 0.4 * torch.sin(vertices / 15.0)).expand(3, -1, -1).contiguous()
    weights = torch.rand(3, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    results = {}
    for backend in ("numba", "pytorch3d"):
        v = views.clone().requires_grad_(True)
        c = colours.clone().requires_grad_(True)
        out = render_views(v, triangles, c, camera, vertex_labels=labels, background=(0.2, 0.2, 0.2),
                           backend=backend)
        results[backend] = (out, v, c)
    ours, theirs = results["numba"][0], results["pytorch3d"][0]
    covered = ours.alpha[:, 0].bool()
    assert 0.2 < covered.float().mean() < 0.8
    same = ours.triangle_ids == theirs.triangle_ids
    assert same.float().mean() > 0.999
    assert torch.equal(ours.alpha, theirs.alpha) and not theirs.alpha.requires_grad
    # Part labels: argmax of barycentrics that differ by ~5e-5, so a near-tie may flip; none did when measured.
    assert theirs.part_labels.dtype == torch.int64 and torch.all(theirs.part_labels[~covered] == 0)
    assert (ours.part_labels == theirs.part_labels)[covered].float().mean() > 0.999
    assert len(theirs.part_labels[covered].unique()) == 10
    torch.testing.assert_close(theirs.barycentrics[same], ours.barycentrics[same], rtol=0, atol=P3D_BARY_ATOL)
    torch.testing.assert_close(theirs.depth[same], ours.depth[same], rtol=P3D_DEPTH_RTOL, atol=0)
    pixels = same.unsqueeze(1).expand_as(ours.image)
    torch.testing.assert_close(theirs.image[pixels], ours.image[pixels], rtol=0, atol=P3D_IMAGE_ATOL)
    assert torch.all(theirs.image.permute(0, 2, 3, 1)[~covered] == torch.tensor([0.2, 0.2, 0.2]))
    # The same loss on the pixels where both chose the same triangle, gradients w.r.t. vertices and colours.
    mask = same.unsqueeze(1).float() * weights
    for out, v, c in results.values():
        ((out.image * mask).sum() + 1e-3 * (out.depth * mask[:, 0]).sum()).backward()
    for index, bound in ((1, P3D_VERTEX_GRAD), (2, P3D_COLOUR_GRAD)):
        reference, other = results["numba"][index].grad, results["pytorch3d"][index].grad
        scale = float(reference.abs().max())
        assert scale > 0 and torch.isfinite(other).all()
        assert float((other - reference).abs().max()) <= bound * scale


@pytest.fixture(scope="module")
def small_face():
    """A smoke-profile config with a ~2000-vertex (4128-triangle) procedural face, its model and camera."""
    from dfmvr_lib.config import get_config
    from dfmvr_lib.face_model.factory import load_face_model

    config = get_config("smoke", {"face_model.procedural_vertex_target": 2000})
    return config, load_face_model(config.face_model), PerspectiveCamera.from_config(config)


def test_pytorch3d_backend_in_render_faces(small_face):
    pytest.importorskip("pytorch3d")
    from dfmvr_lib.scene import FaceCoefficients, random_coefficients, render_faces

    config, model, camera = small_face
    base = random_coefficients(model, 1, torch.tensor([-0.6, 0.0, 0.6]), torch.Generator().manual_seed(0),
                               identity_scale=0.5, expression_scale=0.3)
    results = {}
    for backend in ("numba", "pytorch3d"):
        identity = base.identity.clone().requires_grad_(True)
        angles = base.angles.clone().requires_grad_(True)
        coefficients = FaceCoefficients(identity, base.expression, base.albedo, base.lighting, angles,
                                        base.translation)
        face = render_faces(model, coefficients, camera, background=(0.3, 0.3, 0.3), backend=backend)
        face.render.image.sum().backward()
        results[backend] = (face, identity.grad, angles.grad)
    ours, theirs = results["numba"][0].render, results["pytorch3d"][0].render
    assert theirs.image.shape == (3, 3, config.image_size, config.image_size)
    assert 0.2 < ours.alpha.mean() < 0.9
    same = ours.triangle_ids == theirs.triangle_ids
    assert same.float().mean() > 0.999 and torch.equal(ours.alpha, theirs.alpha)
    covered = ours.alpha[:, 0].bool()
    assert (ours.part_labels == theirs.part_labels)[covered].float().mean() > 0.999
    pixels = same.unsqueeze(1).expand_as(ours.image)
    torch.testing.assert_close(theirs.image[pixels], ours.image[pixels], rtol=0, atol=P3D_IMAGE_ATOL)
    # Gradients w.r.t. the coefficients (through the morphable model, shading and pose); measured 7.9e-6 (identity)
    # and 1.1e-5 (angles) of the largest magnitude, inside the vertex-gradient bound.
    for index in (1, 2):
        reference, other = results["numba"][index], results["pytorch3d"][index]
        assert float(reference.abs().max()) > 0
        assert float((other - reference).abs().max()) <= P3D_VERTEX_GRAD * float(reference.abs().max())


def test_pytorch3d_backend_training_step(small_face):
    """One training step (reconstruct -> batch_loss -> backward) gives the same losses and head gradients with the
    pytorch3d and the numba backend."""
    pytest.importorskip("pytorch3d")
    from dfmvr_lib.networks import build_network
    from dfmvr_lib.parsing import build_parser, frozen_parser
    from dfmvr_lib.scene import random_coefficients, render_faces
    from dfmvr_lib.training import TripletTensors, batch_loss, make_batch, reconstruct

    config, model, camera = small_face
    coefficients = random_coefficients(model, 1, torch.tensor([-0.6, 0.0, 0.6]), torch.Generator().manual_seed(1),
                                       identity_scale=0.5, expression_scale=0.3)
    with torch.no_grad():
        face = render_faces(model, coefficients, camera, background=(0.3, 0.3, 0.3))
    data = TripletTensors((face.views("image").clamp(0, 1) * 255).round().to(torch.uint8),
                          face.views("part_labels").to(torch.uint8), face.landmarks_2d, face.landmark_visibility(),
                          torch.ones(1, 3, dtype=torch.bool), face.vertices[:, model.landmark_101])
    batch = make_batch(data, torch.arange(1))
    torch.manual_seed(0)
    parser = frozen_parser(build_parser(config.parser))
    initial = build_network(config).train()
    results = {}
    for backend in ("numba", "pytorch3d"):
        network = copy.deepcopy(initial)
        prediction = reconstruct(network, model, camera, batch.network_images, batch.network_parse_maps,
                                 backend=backend)
        terms = batch_loss(config.losses, prediction, batch, model, parser, camera=camera)
        terms.total.backward()
        grads = {name: p.grad for name, p in network.named_parameters() if p.grad is not None}
        results[backend] = (terms, grads)
    (ours, our_grads), (theirs, their_grads) = results["numba"], results["pytorch3d"]
    for name in ("total", "photo", "mask", "landmark_2d", "landmark_3d"):
        a, b = float(getattr(ours, name).detach()), float(getattr(theirs, name).detach())
        assert math.isfinite(b) and a > 0
        assert abs(a - b) <= 1e-4 * abs(a), name          # the renders agree to ~1e-5, so do the losses
    assert our_grads.keys() == their_grads.keys()
    nonzero = [name for name, g in our_grads.items() if g.abs().max() > 0]
    assert nonzero                                         # the zero-initialised heads get a gradient
    ours_flat = torch.cat([our_grads[name].reshape(-1) for name in nonzero])
    theirs_flat = torch.cat([their_grads[name].reshape(-1) for name in nonzero])
    assert torch.isfinite(theirs_flat).all()
    # Largest difference over all head gradients, relative to the largest head gradient: measured 7.2e-4, in the
    # lighting head (the largest gradients). It comes from the mask loss, back-propagated through the untrained
    # parser: its per-pixel image gradients nearly cancel in the sums over pixels, which amplifies the ~5e-5
    # barycentric differences (the mask term alone differs by 3.5e-2 on the lighting head, the photo term by 5e-8).
    # Bound 2e-3; and every head's gradient points the same way (1 - cosine measured <= 1.5e-6, bound 1e-5).
    assert float((theirs_flat - ours_flat).abs().max()) <= 2e-3 * float(ours_flat.abs().max())
    for name in nonzero:
        cosine = torch.nn.functional.cosine_similarity(our_grads[name].reshape(1, -1),
                                                       their_grads[name].reshape(1, -1))
        assert float(cosine) > 1 - 1e-5, name
