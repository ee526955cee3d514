"""Interactive 3D face meshes in notebooks: plotly ``Mesh3d`` in a ``FigureWidget`` that rotates and zooms with
the mouse.

Why plotly's FigureWidget: it is pip-installable with nothing else to set up, and in JupyterLab 4 it is displayed
through ``anywidget``, whose JavaScript (plotly.js included) ships inside the Python packages (prebuilt lab
extensions), so it works offline and needs no JupyterLab extension to be built or enabled. The WebGL drawing
happens in the browser, so the kernel needs no GPU or OpenGL context. The alternatives need more: k3d has its own
JupyterLab extension to install, open3d's web visualiser needs its WebRTC server and an OpenGL context on the
kernel's machine. ``widget=False`` gives a plain ``go.Figure`` (static HTML output, no ipywidgets comm needed), for
exported notebooks.

These figures are for looking around a mesh; the figures written to ``results/`` stay matplotlib ones
(:mod:`dfmvr_lib.plots`, :mod:`dfmvr_lib.reconstruction.viewer`), which need no browser to be saved.

Conventions (docs/conventions.md): vertices in millimetres in the head frame, ``+x`` to the image's right, ``+y`` up,
``+z`` out of the face towards the camera. The plotly camera starts on the ``+z`` axis with ``+y`` up, so the face
is seen from the front as in a frontal render.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

ERROR_COLOUR_SCALE = "Viridis"
"""Sequential plotly colour scale of the error colouring (low errors dark blue, high errors yellow)."""
NO_ERROR_COLOUR = "rgb(150, 150, 150)"
"""Colour of the vertices whose error is NaN (no ground truth there)."""
SKIN_COLOUR = "rgb(225, 180, 155)"
"""The plain surface colour when neither vertex colours nor errors are given."""
LIGHTING = dict(ambient=0.35, diffuse=0.85, specular=0.15, roughness=0.6, fresnel=0.1)
"""plotly ``Mesh3d`` lighting: soft, so that albedo and error colours stay readable."""
LIGHT_POSITION = dict(x=300.0, y=600.0, z=2000.0)
"""The light, in front of the face (towards the viewer), above and to the right."""
FRONT_CAMERA = dict(eye=dict(x=0.0, y=0.0, z=1.8), up=dict(x=0.0, y=1.0, z=0.0), center=dict(x=0.0, y=0.0, z=0.0),
                    projection=dict(type="perspective"))
"""Initial plotly scene camera: on the +z axis (in front of the face), +y up."""


def _to_numpy(array: Any) -> np.ndarray:
    if hasattr(array, "detach") and hasattr(array, "cpu"):      # torch.Tensor without importing torch
        array = array.detach().cpu().numpy()
    return np.asarray(array)


def _real_array(array: Any, name: str) -> np.ndarray:
    if array is None:
        raise ValueError(f"{name} is required, got None")
    values = _to_numpy(array)
    if values.dtype == object or not (np.issubdtype(values.dtype, np.floating) or
                                      np.issubdtype(values.dtype, np.integer) or values.dtype == bool):
        raise ValueError(f"{name} must hold real numbers, got dtype {values.dtype}")
    return values


def _check_vertices(vertices: Any) -> np.ndarray:
    values = _real_array(vertices, "vertices")
    if values.ndim != 2 or values.shape[1] != 3 or values.shape[0] < 3:
        raise ValueError(f"vertices must have shape (V, 3) with V >= 3, got {tuple(values.shape)}")
    values = values.astype(np.float64)
    if not np.isfinite(values).all():
        row = int(np.flatnonzero(~np.isfinite(values).all(axis=1))[0])
        raise ValueError(f"vertices must be finite, row {row} has NaN or infinity")
    return values


def _check_triangles(triangles: Any, vertex_count: int) -> np.ndarray:
    values = _real_array(triangles, "triangles")
    if values.ndim != 2 or values.shape[1] != 3 or values.shape[0] < 1:
        raise ValueError(f"triangles must have shape (F, 3) with F >= 1, got {tuple(values.shape)}")
    if not np.issubdtype(values.dtype, np.integer):
        raise ValueError(f"triangles must hold integer vertex indices, got dtype {values.dtype}")
    low, high = int(values.min()), int(values.max())
    if low < 0 or high >= vertex_count:
        raise ValueError(f"triangles index out of range [0, {vertex_count}) (the vertices' rows): "
                         f"min {low}, max {high}")
    return values.astype(np.int64)


def _check_colours(vertex_colours: Any, vertex_count: int) -> np.ndarray:
    values = _real_array(vertex_colours, "vertex_colours").astype(np.float64)
    if values.ndim != 2 or values.shape[1] != 3:
        raise ValueError(f"vertex_colours must have shape (V, 3) RGB, got {tuple(values.shape)}")
    if values.shape[0] != vertex_count:
        raise ValueError(f"vertex_colours has {values.shape[0]} rows but there are {vertex_count} vertices")
    if not np.isfinite(values).all() or values.min() < 0.0 or values.max() > 1.0:
        raise ValueError("vertex_colours must be finite RGB values in [0, 1] (clamp them first), got range "
                         f"[{np.nanmin(values):.3g}, {np.nanmax(values):.3g}]")
    return values


def _check_errors(vertex_errors_mm: Any, vertex_count: int) -> np.ndarray:
    values = _real_array(vertex_errors_mm, "vertex_errors_mm").astype(np.float64)
    if values.ndim != 1:
        raise ValueError(f"vertex_errors_mm must have shape (V,), got {tuple(values.shape)}")
    if values.shape[0] != vertex_count:
        raise ValueError(f"vertex_errors_mm has {values.shape[0]} values but there are {vertex_count} vertices")
    if np.isinf(values).any():
        raise ValueError("vertex_errors_mm must not hold infinity (NaN marks a vertex without ground truth)")
    return values


def _error_range(errors: np.ndarray, error_range_mm: Sequence[float] | None) -> tuple[float, float]:
    if error_range_mm is not None:
        try:
            low, high = (float(v) for v in error_range_mm)
        except (TypeError, ValueError):
            raise ValueError(f"error_range_mm must be two numbers (low, high) in mm, got {error_range_mm!r}") from None
        if not (np.isfinite(low) and np.isfinite(high) and low < high):
            raise ValueError(f"error_range_mm must be finite with low < high, got {error_range_mm!r}")
        return low, high
    finite = errors[np.isfinite(errors)]
    high = float(np.percentile(finite, 95)) if finite.size else 1.0
    return 0.0, high if high > 0.0 else 1.0


def _rgb_strings(colours: np.ndarray) -> list[str]:
    """(V, 3) in [0, 1] -> plotly colour strings ``"rgb(r, g, b)"`` with 0-255 integers."""
    levels = np.rint(colours * 255.0).astype(np.int64)
    return [f"rgb({r}, {g}, {b})" for r, g, b in levels.tolist()]


def error_colours(vertex_errors_mm: np.ndarray, low_mm: float, high_mm: float) -> list[str]:
    """Plotly colour strings of per-vertex errors (V,) mm on :data:`ERROR_COLOUR_SCALE` over [low_mm, high_mm]
    (values outside are clipped), :data:`NO_ERROR_COLOUR` where the error is NaN."""
    from plotly.colors import sample_colorscale

    errors = np.asarray(vertex_errors_mm, dtype=np.float64)
    known = np.isfinite(errors)
    colours = np.full(errors.shape[0], NO_ERROR_COLOUR, dtype=object)
    if known.any():
        positions = np.clip((errors[known] - low_mm) / (high_mm - low_mm), 0.0, 1.0)
        # sample a fixed table (fast, 256 levels) rather than every vertex
        table = np.array(sample_colorscale(ERROR_COLOUR_SCALE, np.linspace(0.0, 1.0, 256).tolist()), dtype=object)
        colours[known] = table[np.rint(positions * 255.0).astype(np.int64)]
    return colours.tolist()


def mesh_figure(vertices: Any, triangles: Any, *, vertex_colours: Any = None, vertex_errors_mm: Any = None,
                title: str | None = None, error_range_mm: Sequence[float] | None = None, widget: bool = True):
    """An interactive figure of a triangle mesh, seen from the front (+z towards the viewer, +y up).

    Args:
        vertices: (V, 3) float, mm, head frame (numpy or torch; docs/conventions.md).
        triangles: (F, 3) int vertex indices in [0, V) (numpy or torch).
        vertex_colours: optional (V, 3) RGB in [0, 1] (e.g. albedo): per-vertex colours (plotly ``vertexcolor``,
            stored as ``"rgb(r, g, b)"`` strings with 0-255 integers).
        vertex_errors_mm: optional (V,) float, mm: colour by error on :data:`ERROR_COLOUR_SCALE`, with a colour bar
            "error (mm)"; NaN marks a vertex without ground truth, drawn :data:`NO_ERROR_COLOUR`. Excludes
            ``vertex_colours``.
        title: figure title.
        error_range_mm: (low, high) mm of the colour scale; default (0, 95th percentile of the finite errors).
        widget: True: a ``plotly.graph_objects.FigureWidget`` (interactive in JupyterLab through anywidget); False:
            a ``go.Figure`` (static HTML output, no widget comm).
    Returns:
        The figure. Trace 0 is the ``Mesh3d`` (x, y, z = the vertices' columns, i, j, k = the triangles' columns,
        hover text "vertex n" and, with errors, "error e mm"); with errors, trace 1 is an invisible ``Scatter3d``
        that carries the colour bar (``marker.cmin`` / ``marker.cmax`` = the range), because the mesh's own colour
        bar needs ``intensity``, which has no colour for NaN.
    Raises:
        ValueError naming the argument: wrong shapes, non-finite vertices, triangle indices out of range, colours
        or errors whose length is not V, colours outside [0, 1], a bad ``error_range_mm``, or both colourings.
    """
    import plotly.graph_objects as go

    points = _check_vertices(vertices)
    faces = _check_triangles(triangles, points.shape[0])
    if vertex_colours is not None and vertex_errors_mm is not None:
        raise ValueError("give vertex_colours or vertex_errors_mm, not both")
    if error_range_mm is not None and vertex_errors_mm is None:
        raise ValueError("error_range_mm needs vertex_errors_mm")
    count = points.shape[0]
    hover = [f"vertex {n}" for n in range(count)]
    colouring: dict[str, Any] = {"color": SKIN_COLOUR}
    colour_bar = None
    if vertex_colours is not None:
        colouring = {"vertexcolor": _rgb_strings(_check_colours(vertex_colours, count))}
    elif vertex_errors_mm is not None:
        errors = _check_errors(vertex_errors_mm, count)
        low, high = _error_range(errors, error_range_mm)
        colouring = {"vertexcolor": error_colours(errors, low, high)}
        hover = [f"{text}<br>error {e:.2f} mm" if np.isfinite(e) else f"{text}<br>error: no ground truth"
                 for text, e in zip(hover, errors.tolist())]
        centre = points.mean(axis=0)
        colour_bar = go.Scatter3d(
            x=[centre[0]] * 2, y=[centre[1]] * 2, z=[centre[2]] * 2, mode="markers", name="error (mm)",
            marker=dict(size=1, opacity=0.0, color=[low, high], colorscale=ERROR_COLOUR_SCALE, cmin=low, cmax=high,
                        showscale=True, colorbar=dict(title=dict(text="error (mm)"), thickness=15, len=0.75)),
            hoverinfo="skip", showlegend=False)
    mesh = go.Mesh3d(x=points[:, 0], y=points[:, 1], z=points[:, 2], i=faces[:, 0], j=faces[:, 1], k=faces[:, 2],
                     flatshading=False, lighting=LIGHTING, lightposition=LIGHT_POSITION, hovertext=hover,
                     hoverinfo="text", name=title or "mesh", showscale=False, **colouring)
    data = [mesh] if colour_bar is None else [mesh, colour_bar]
    hidden = dict(visible=False, showbackground=False)
    layout = go.Layout(
        title=dict(text=title, x=0.5, font=dict(size=13)) if title else None,
        # "orbit": a horizontal drag turns the face about its vertical (y) axis; plotly's default "turntable" keeps
        # z up and would roll the face over
        scene=dict(aspectmode="data", xaxis=hidden, yaxis=hidden, zaxis=hidden, camera=FRONT_CAMERA,
                   dragmode="orbit"),
        margin=dict(l=0, r=0, t=40 if title else 10, b=0), height=500, showlegend=False)
    return go.FigureWidget(data=data, layout=layout) if widget else go.Figure(data=data, layout=layout)


def reconstruction_mesh_figure(model, coefficients, sample: int = 0, **kwargs):
    """The face of ``coefficients`` (a :class:`~dfmvr_lib.scene.FaceCoefficients`, sample ``sample``) through the
    morphable ``model``, in the head frame (no pose), coloured by its albedo clamped to [0, 1] unless ``kwargs``
    give ``vertex_errors_mm`` or ``vertex_colours``. Other ``kwargs`` go to :func:`mesh_figure`."""
    import torch

    rows = slice(sample, sample + 1)
    with torch.no_grad():
        vertices = model.shape(coefficients.identity[rows], coefficients.expression[rows])[0]
        if "vertex_errors_mm" not in kwargs and "vertex_colours" not in kwargs:
            kwargs["vertex_colours"] = model.albedo(coefficients.albedo[rows])[0].clamp(0.0, 1.0)
    return mesh_figure(vertices, model.triangles, **kwargs)


def protocol_error_figure(result, **kwargs):
    """The ground-truth surface inside the evaluation crop, each point coloured by its unsigned point-to-plane
    distance (mm) from the aligned reconstruction: the interactive form of the paper's error maps.

    Args:
        result: a :class:`~dfmvr_lib.evaluation.protocol.ProtocolResult` (``gt_points`` (n, 3) mm, ``gt_triangles``
            (m, 3) into them, ``distances`` (n,) mm); a point-cloud ground truth (no triangles) cannot be shown as
            a mesh and raises ``ValueError``.
        kwargs: passed to :func:`mesh_figure` (``title``, ``error_range_mm``, ``widget``).
    """
    if result.gt_triangles is None:
        raise ValueError("protocol_error_figure: result has no gt_triangles (a point-cloud ground truth)")
    return mesh_figure(result.gt_points, result.gt_triangles, vertex_errors_mm=np.abs(result.distances), **kwargs)


__all__ = ["ERROR_COLOUR_SCALE", "NO_ERROR_COLOUR", "SKIN_COLOUR", "error_colours", "mesh_figure",
           "protocol_error_figure", "reconstruction_mesh_figure"]
