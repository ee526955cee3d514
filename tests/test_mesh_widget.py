"""The plotly mesh viewer for notebooks: arrays passed through, colourings, bad inputs, the model convenience."""
import numpy as np
import plotly.graph_objects as go
import pytest
import torch

from dfmvr_lib.config import get_config
from dfmvr_lib.face_model.factory import load_face_model
from dfmvr_lib.mesh_widget import NO_ERROR_COLOUR, SKIN_COLOUR, mesh_figure, reconstruction_mesh_figure
from dfmvr_lib.scene import FaceCoefficients

# a square pyramid: 5 vertices (mm), 4 side triangles, two base triangles
VERTICES = np.array([[0, 0, 10], [-5, -5, 0], [5, -5, 0], [5, 5, 0], [-5, 5, 0]], dtype=np.float64)
TRIANGLES = np.array([[0, 1, 2], [0, 2, 3], [0, 3, 4], [0, 4, 1], [1, 3, 2], [1, 4, 3]], dtype=np.int64)


def mesh_trace(figure) -> go.Mesh3d:
    meshes = [trace for trace in figure.data if trace.type == "mesh3d"]
    assert len(meshes) == 1
    return meshes[0]


def test_trace_holds_the_vertices_and_triangles_from_torch():
    figure = mesh_figure(torch.tensor(VERTICES, dtype=torch.float32), torch.tensor(TRIANGLES), widget=False)
    assert isinstance(figure, go.Figure) and not isinstance(figure, go.FigureWidget)
    trace = mesh_trace(figure)
    np.testing.assert_allclose(np.column_stack([trace.x, trace.y, trace.z]), VERTICES)
    np.testing.assert_array_equal(np.column_stack([trace.i, trace.j, trace.k]), TRIANGLES)
    assert trace.color == SKIN_COLOUR and trace.vertexcolor is None
    assert list(trace.hovertext) == [f"vertex {n}" for n in range(5)]


def test_layout_front_camera_equal_aspect_hidden_axes():
    figure = mesh_figure(VERTICES, TRIANGLES, title="pyramid", widget=False)
    scene = figure.layout.scene
    assert scene.aspectmode == "data"
    assert not scene.xaxis.visible and not scene.yaxis.visible and not scene.zaxis.visible
    # +z (out of the face) towards the viewer, +y up: the face seen from the front
    assert (scene.camera.eye.x, scene.camera.eye.y) == (0, 0) and scene.camera.eye.z > 0
    assert (scene.camera.up.x, scene.camera.up.y, scene.camera.up.z) == (0, 1, 0)
    assert scene.dragmode == "orbit"        # "turntable" would force z up and roll the face over
    assert figure.layout.title.text == "pyramid"
    assert max(figure.layout.margin.l, figure.layout.margin.r, figure.layout.margin.b) <= 10


def test_vertex_colours_become_rgb_strings():
    colours = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [0.5, 0.5, 0.5], [1, 1, 1]], dtype=np.float32)
    trace = mesh_trace(mesh_figure(VERTICES, TRIANGLES, vertex_colours=colours, widget=False))
    assert list(trace.vertexcolor) == ["rgb(255, 0, 0)", "rgb(0, 255, 0)", "rgb(0, 0, 255)", "rgb(128, 128, 128)",
                                       "rgb(255, 255, 255)"]


def test_error_colouring_colour_bar_range_and_nan():
    errors = np.array([0.0, 1.0, 2.0, np.nan, 10.0])
    figure = mesh_figure(VERTICES, TRIANGLES, vertex_errors_mm=errors, error_range_mm=(0.0, 2.0), widget=False)
    trace = mesh_trace(figure)
    colours = list(trace.vertexcolor)
    assert colours[3] == NO_ERROR_COLOUR                       # no ground truth: grey
    assert colours[0] == "rgb(68, 1, 84)"                      # viridis low end
    assert colours[2] == colours[4] == "rgb(253, 231, 37)"     # high end, above the range clipped to it
    assert len(set(colours[:3])) == 3
    bars = [t for t in figure.data if t.type == "scatter3d" and t.marker.showscale]
    assert len(bars) == 1
    assert bars[0].marker.colorbar.title.text == "error (mm)"
    assert (bars[0].marker.cmin, bars[0].marker.cmax) == (0.0, 2.0)
    assert "error 1.00 mm" in trace.hovertext[1] and "no ground truth" in trace.hovertext[3]


def test_error_range_defaults_to_zero_and_95th_percentile_of_finite_errors():
    errors = np.array([1.0, 2.0, 3.0, 4.0, np.nan])
    figure = mesh_figure(VERTICES, TRIANGLES, vertex_errors_mm=errors, widget=False)
    marker = figure.data[1].marker
    assert marker.cmin == 0.0
    assert marker.cmax == pytest.approx(np.percentile([1.0, 2.0, 3.0, 4.0], 95))
    all_unknown = mesh_figure(VERTICES, TRIANGLES, vertex_errors_mm=np.full(5, np.nan), widget=False)
    assert set(mesh_trace(all_unknown).vertexcolor) == {NO_ERROR_COLOUR}


@pytest.mark.parametrize("kwargs, argument", [
    (dict(vertices=VERTICES[:, :2]), "vertices"),
    (dict(vertices=np.where(np.arange(15).reshape(5, 3) == 4, np.nan, VERTICES)), "vertices"),
    (dict(triangles=TRIANGLES[:, :2]), "triangles"),
    (dict(triangles=TRIANGLES.astype(np.float64)), "triangles"),
    (dict(triangles=TRIANGLES + 1), "triangles"),
    (dict(triangles=TRIANGLES - 1), "triangles"),
    (dict(vertex_colours=np.ones((4, 3))), "vertex_colours"),
    (dict(vertex_colours=np.ones((5, 4))), "vertex_colours"),
    (dict(vertex_colours=np.full((5, 3), 1.5)), "vertex_colours"),
    (dict(vertex_errors_mm=np.ones(4)), "vertex_errors_mm"),
    (dict(vertex_errors_mm=np.ones((5, 1))), "vertex_errors_mm"),
    (dict(vertex_errors_mm=np.ones(5), error_range_mm=(2.0, 1.0)), "error_range_mm"),
    (dict(vertex_errors_mm=np.ones(5), vertex_colours=np.ones((5, 3))), "vertex_colours or vertex_errors_mm"),
])
def test_bad_inputs_name_the_argument(kwargs, argument):
    arguments = dict(vertices=VERTICES, triangles=TRIANGLES, widget=False) | kwargs
    vertices, triangles = arguments.pop("vertices"), arguments.pop("triangles")
    with pytest.raises(ValueError, match=argument):
        mesh_figure(vertices, triangles, **arguments)


def test_widget_true_gives_a_figure_widget():
    pytest.importorskip("anywidget")
    figure = mesh_figure(VERTICES, TRIANGLES)
    assert isinstance(figure, go.FigureWidget)
    np.testing.assert_array_equal(np.asarray(mesh_trace(figure).i), TRIANGLES[:, 0])


@pytest.fixture(scope="module")
def model():
    return load_face_model(get_config("smoke").face_model)


def test_reconstruction_mesh_figure_on_the_smoke_model(model):
    coefficients = FaceCoefficients.neutral(model, 2)
    coefficients.identity[1, 0] = 2.0
    trace = mesh_trace(reconstruction_mesh_figure(model, coefficients, sample=1, widget=False))
    assert len(trace.x) == model.num_vertices and len(trace.i) == model.triangles.shape[0]
    expected = model.shape(coefficients.identity[1:2], coefficients.expression[1:2])[0].numpy()
    np.testing.assert_allclose(np.column_stack([trace.x, trace.y, trace.z]), expected, rtol=1e-6)
    assert len(trace.vertexcolor) == model.num_vertices    # the albedo
    errors = np.linspace(0.0, 3.0, model.num_vertices)
    trace = mesh_trace(reconstruction_mesh_figure(model, coefficients, vertex_errors_mm=errors, widget=False))
    assert len(trace.vertexcolor) == model.num_vertices


def test_protocol_error_figure_colours_the_cropped_ground_truth_by_distance():
    from types import SimpleNamespace

    from dfmvr_lib.mesh_widget import protocol_error_figure

    points = np.array([[0.0, 0.0, 0.0], [10.0, 0.0, 0.0], [0.0, 10.0, 0.0], [10.0, 10.0, 1.0]])
    triangles = np.array([[0, 1, 2], [1, 3, 2]])
    result = SimpleNamespace(gt_points=points, gt_triangles=triangles, distances=np.array([-0.5, 0.5, 1.0, -2.0]))
    figure = protocol_error_figure(result, widget=False, error_range_mm=(0.0, 2.0))
    mesh = figure.data[0]
    assert np.allclose(mesh.x, points[:, 0]) and np.array_equal(np.asarray(mesh.i), triangles[:, 0])
    assert mesh.vertexcolor[0] == mesh.vertexcolor[1] != mesh.vertexcolor[3]      # |-0.5| == |0.5|, unsigned
    with pytest.raises(ValueError, match="gt_triangles"):
        protocol_error_figure(SimpleNamespace(gt_points=points, gt_triangles=None, distances=np.zeros(4)))
