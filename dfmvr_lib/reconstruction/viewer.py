"""Looking at a reconstruction in a notebook: the face rendered by the workbook's own renderer at any yaw and pitch,
and an ipywidgets explorer whose sliders change the view angle and the first identity / expression components.

Nothing here needs a 3D widget library: each slider move re-renders the mesh (a few tens of ms at 224 px) and
redraws a matplotlib figure, which works in JupyterLab, classic Jupyter and VS Code alike.
"""
from __future__ import annotations

import math
from typing import Callable, Sequence

import matplotlib.pyplot as plt
import torch

from ..camera import PerspectiveCamera
from ..face_model.base import MorphableModel
from ..plots import to_numpy_image
from ..scene import FaceCoefficients, render_faces
from .photo_inputs import photo_triplets


def posed_coefficients(coefficients: FaceCoefficients, yaws_degrees: Sequence[float], pitch_degrees: float = 0.0,
                       sample: int = 0, identity: dict[int, float] | None = None,
                       expression: dict[int, float] | None = None) -> FaceCoefficients:
    """One face of ``coefficients`` seen at the given yaws (degrees, one view each), the same pitch, no roll and no
    translation (centred, ``camera_distance_mm`` from the camera); ``identity`` / ``expression`` replace single
    components ``{index: value}``."""
    with torch.no_grad():
        shape_id = coefficients.identity[sample:sample + 1].detach().clone()
        shape_exp = coefficients.expression[sample:sample + 1].detach().clone()
        for index, value in (identity or {}).items():
            shape_id[0, index] = value
        for index, value in (expression or {}).items():
            shape_exp[0, index] = value
        views = len(yaws_degrees)
        angles = torch.zeros(1, views, 3, device=shape_id.device)
        angles[0, :, 0] = math.radians(pitch_degrees)
        angles[0, :, 1] = torch.tensor([math.radians(y) for y in yaws_degrees])
        return FaceCoefficients(shape_id, shape_exp, coefficients.albedo[sample:sample + 1].detach(),
                                coefficients.lighting[sample:sample + 1].detach(), angles,
                                torch.zeros(1, views, 3, device=shape_id.device))


def mesh_view_figure(model: MorphableModel, coefficients: FaceCoefficients, yaws_degrees: Sequence[float] = (0.0,),
                     pitch_degrees: float = 0.0, image_size: int = 224, sample: int = 0,
                     identity: dict[int, float] | None = None, expression: dict[int, float] | None = None,
                     background: tuple[float, float, float] = (0.93, 0.93, 0.93), title: str | None = None,
                     focal_length_at_224: float = 800.0):
    """The reconstructed face rendered (shaded with its fitted light) at each yaw in ``yaws_degrees`` (positive =
    nose towards the image's right) and ``pitch_degrees`` (positive = nose down), one panel per yaw, by a camera
    1000 mm away with ``focal_length_at_224`` (below the training camera's 1015 px, so the whole head fits)."""
    camera = PerspectiveCamera.for_image_size(image_size, focal_length_at_224)
    posed = posed_coefficients(coefficients, yaws_degrees, pitch_degrees, sample, identity, expression)
    with torch.no_grad():
        images = render_faces(model, posed, camera, background=background).render.image
    fig, axes = plt.subplots(1, len(yaws_degrees), figsize=(2.6 * len(yaws_degrees), 2.9), squeeze=False)
    for ax, image, yaw in zip(axes[0], images, yaws_degrees):
        ax.imshow(to_numpy_image(image))
        ax.set_title(f"yaw {yaw:+.0f} deg, pitch {pitch_degrees:+.0f} deg", fontsize=8)
        ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def coefficient_explorer(model: MorphableModel, coefficients: FaceCoefficients, image_size: int = 224,
                         components: int = 3, sample: int = 0, slider_range: float = 3.0):
    """An ipywidgets ``interactive`` panel: sliders for yaw and pitch (degrees) and for the first ``components``
    identity and expression coefficients (starting at the reconstruction's values, range +- ``slider_range``
    standard deviations); every change re-renders :func:`mesh_view_figure`. Display it with ``display(...)``."""
    import ipywidgets as widgets

    def slider(description: str, value: float, low: float, high: float, step: float):
        return widgets.FloatSlider(value=value, min=low, max=high, step=step, description=description,
                                   continuous_update=False, readout_format=".2f")

    controls = {"yaw": slider("yaw (deg)", 0.0, -90.0, 90.0, 5.0),
                "pitch": slider("pitch (deg)", 0.0, -45.0, 45.0, 5.0)}
    for kind, values in (("identity", coefficients.identity[sample]), ("expression", coefficients.expression[sample])):
        for index in range(min(components, values.shape[0])):
            start = float(values[index].clamp(-slider_range, slider_range))
            controls[f"{kind}_{index}"] = slider(f"{kind[:3]} {index}", start, -slider_range, slider_range, 0.1)

    def draw(yaw: float, pitch: float, **values: float) -> None:
        identity = {int(k.split("_")[1]): v for k, v in values.items() if k.startswith("identity_")}
        expression = {int(k.split("_")[1]): v for k, v in values.items() if k.startswith("expression_")}
        from IPython.display import display

        figure = mesh_view_figure(model, coefficients, (yaw,), pitch, image_size, sample, identity, expression)
        display(figure)
        plt.close(figure)

    return widgets.interactive(draw, **controls)


def triplet_chooser(folder: str, on_choose: Callable[[object], None]):
    """An ipywidgets panel to pick photos: a folder (Text) with a "find photos" button that lists its triplets
    (:func:`~dfmvr_lib.reconstruction.photo_inputs.photo_triplets`, also one level down) in a Dropdown, and a
    "reconstruct" button that calls ``on_choose(group)`` with the chosen
    :class:`~dfmvr_lib.data.photos.PhotoGroup`, its output shown below the buttons."""
    import ipywidgets as widgets


    path = widgets.Text(value=str(folder or ""), description="folder", layout=widgets.Layout(width="60%"))
    find = widgets.Button(description="find photos")
    choice = widgets.Dropdown(description="triplet", options=[])
    run = widgets.Button(description="reconstruct", button_style="primary")
    output = widgets.Output()

    def list_triplets(_=None) -> None:
        try:
            groups = photo_triplets(path.value)
        except (NotADirectoryError, FileNotFoundError) as error:
            groups = []
            with output:
                print(error)
        choice.options = [(f"{g.name} ({sum(f is not None for f in g.files)} views)", g) for g in groups]

    def reconstruct(_=None) -> None:
        if choice.value is None:
            return
        output.clear_output()
        with output:
            on_choose(choice.value)

    find.on_click(list_triplets)
    run.on_click(reconstruct)
    list_triplets()
    return widgets.VBox([widgets.HBox([path, find]), widgets.HBox([choice, run]), output])


__all__ = ["coefficient_explorer", "mesh_view_figure", "posed_coefficients", "triplet_chooser"]
