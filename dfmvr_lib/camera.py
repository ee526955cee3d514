"""Pose (Euler angles) and the perspective pinhole camera, as docs/conventions.md defines them.

Head frame: x right, y up, z towards the camera; millimetres; angles in radians.
Pose: R = Rz(roll) Ry(yaw) Rx(pitch), posed v' = R v + t.
Camera at (0, 0, camera_distance_mm) looking down -z; pixel origin top-left, v down, pixel centres at +0.5.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch


def euler_to_rotation(angles: torch.Tensor) -> torch.Tensor:
    """Rotation matrices from Euler angles.

    Args:
        angles: (..., 3) radians, ordered (pitch about x, yaw about y, roll about z).
    Returns:
        (..., 3, 3) rotation R = Rz(roll) @ Ry(yaw) @ Rx(pitch).
    """
    if angles.shape[-1] != 3:
        raise ValueError(f"angles must end in 3 (pitch, yaw, roll), got shape {tuple(angles.shape)}")
    pitch, yaw, roll = angles.unbind(-1)
    cx, sx = torch.cos(pitch), torch.sin(pitch)
    cy, sy = torch.cos(yaw), torch.sin(yaw)
    cz, sz = torch.cos(roll), torch.sin(roll)
    one, zero = torch.ones_like(pitch), torch.zeros_like(pitch)
    rx = torch.stack([one, zero, zero, zero, cx, -sx, zero, sx, cx], -1).reshape(*pitch.shape, 3, 3)
    ry = torch.stack([cy, zero, sy, zero, one, zero, -sy, zero, cy], -1).reshape(*pitch.shape, 3, 3)
    rz = torch.stack([cz, -sz, zero, sz, cz, zero, zero, zero, one], -1).reshape(*pitch.shape, 3, 3)
    return rz @ ry @ rx


def rotation_to_euler(rotation: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`euler_to_rotation` for |yaw| < 90 deg. (..., 3, 3) -> (..., 3) (pitch, yaw, roll)."""
    yaw = torch.asin((-rotation[..., 2, 0]).clamp(-1.0, 1.0))
    pitch = torch.atan2(rotation[..., 2, 1], rotation[..., 2, 2])
    roll = torch.atan2(rotation[..., 1, 0], rotation[..., 0, 0])
    return torch.stack([pitch, yaw, roll], -1)


def canonical_angles(angles: torch.Tensor) -> torch.Tensor:
    """The same rotations with |yaw| <= 90 deg and pitch, roll in (-180, 180] deg: (..., 3) -> (..., 3) radians.

    Euler angles are not unique: (pitch + pi, pi - yaw, roll + pi) and any multiple of 2 pi give the same rotation.
    A network's angle head can settle in such a branch (a frontal view as yaw 174 deg with pitch and roll near
    180 deg); anything that reads the yaw itself (is this a side view? how far is the head turned?) needs this form.
    Exact for |yaw| < 90 deg (:func:`rotation_to_euler`); gradients do not pass through it.
    """
    with torch.no_grad():
        return rotation_to_euler(euler_to_rotation(angles))


def apply_pose(vertices: torch.Tensor, angles: torch.Tensor, translation: torch.Tensor) -> torch.Tensor:
    """Pose head-frame vertices: v' = R v + t.

    Args:
        vertices: (N, V, 3) mm
        angles: (N, 3) radians (pitch, yaw, roll)
        translation: (N, 3) mm
    Returns:
        (N, V, 3) posed vertices in mm.
    """
    rotation = euler_to_rotation(angles)
    return vertices @ rotation.transpose(-1, -2) + translation.unsqueeze(-2)


@dataclass(frozen=True)
class PerspectiveCamera:
    """Pinhole camera of docs/conventions.md.

    Attributes:
        image_size: H = W in pixels.
        focal_length: pixels; use :meth:`for_image_size` for the 1015-px-at-224 default.
        camera_distance_mm: distance of the camera centre from the head-frame origin along +z.
    """

    image_size: int = 224
    focal_length: float = 1015.0
    camera_distance_mm: float = 1000.0

    @classmethod
    def for_image_size(cls, image_size: int, focal_length_at_224: float = 1015.0,
                       camera_distance_mm: float = 1000.0) -> "PerspectiveCamera":
        """The default camera, focal length scaled linearly with the image size."""
        return cls(image_size=int(image_size), focal_length=focal_length_at_224 * image_size / 224.0,
                   camera_distance_mm=camera_distance_mm)

    @classmethod
    def from_config(cls, config) -> "PerspectiveCamera":
        """Camera for a :class:`dfmvr_lib.config.WorkbookConfig`."""
        return cls.for_image_size(config.image_size, config.camera.focal_length_at_224,
                                  config.camera.camera_distance_mm)

    @property
    def principal_point(self) -> float:
        return self.image_size / 2.0

    def depth(self, points: torch.Tensor) -> torch.Tensor:
        """Distance along the viewing axis, (..., 3) posed mm -> (...) mm, > 0 in front of the camera."""
        return self.camera_distance_mm - points[..., 2]

    def project(self, points: torch.Tensor) -> torch.Tensor:
        """Posed points (..., 3) mm -> pixel coordinates (..., 2) (u right, v down, origin top-left corner)."""
        depth = self.depth(points)
        u = self.principal_point + self.focal_length * points[..., 0] / depth
        v = self.principal_point - self.focal_length * points[..., 1] / depth
        return torch.stack([u, v], -1)

    def unproject(self, pixels: torch.Tensor, depth: torch.Tensor) -> torch.Tensor:
        """Pixel coordinates (..., 2) and depth (...) mm -> posed points (..., 3) mm (inverse of project)."""
        x = (pixels[..., 0] - self.principal_point) * depth / self.focal_length
        y = (self.principal_point - pixels[..., 1]) * depth / self.focal_length
        return torch.stack([x, y, self.camera_distance_mm - depth], -1)


def view_yaws(side_yaw: float) -> torch.Tensor:
    """Yaw angles (3,) radians for the views A (left), B (front), C (right): (-side, 0, +side)."""
    return torch.tensor([-side_yaw, 0.0, side_yaw])
