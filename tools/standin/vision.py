"""The stand-in's vision side: the global view of the Phi-3 HD transform, and a small CNN.

Only the global 336x336 view (crop 0 of the HD transform: the frame padded white to a square grid
and resized to 336) carries what the model reads, so num_crops 1 and 4 give the same answer and the
sub-crops cost tokens but never change meaning. The trunk runs per crop (like CLIP in Phi-3.5) and
gives a 24x24 grid of TRUNK_CH features per crop (zero-padded to CLIP's 1024 channels in the
OpenVINO folder); the head reads the 2x2-merged global grid (144 tokens, as Phi-3.5's HD feature
transform lays them out) and classifies each horizontal third: shape (none/circle/square/triangle)
and color. Its softmax probabilities (the "scene code", 30 numbers) are projected to the decoder's
hidden size and given to every image token.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch
from torch import nn

from edge.inference import phi3v_preprocess as pp

from .world import COLORS, POSITIONS, SHAPES, Scene

CROP = pp.CROP
TRUNK_CH = 8
GRID = CROP // 14  # 24
MERGED = GRID // 2  # 12
N_SHAPE = len(SHAPES) + 1  # class 0 = empty third
N_COLOR = len(COLORS)
CODE = len(POSITIONS) * (N_SHAPE + N_COLOR)  # 30


def global_view(bgr: np.ndarray, num_crops: int) -> np.ndarray:
    """Crop 0 of edge.inference.phi3v_preprocess.hd_transform, [3,336,336] float32, computed the
    same way operation for operation (without cutting the sub-crops nobody reads here)."""
    h, w = bgr.shape[:2]
    new_h, new_w, pad_h, pad_w = pp.hd_size(h, w, num_crops)
    rgb = np.ascontiguousarray(bgr[:, :, ::-1])
    resized = pp.resize_bilinear_u8(rgb, new_h, new_w)
    padded = np.full((pad_h, pad_w, 3), 255, np.uint8)
    top, left = (pad_h - new_h) // 2, (pad_w - new_w) // 2
    padded[top : top + new_h, left : left + new_w] = resized
    planes = np.stack([pp._NORM_LUT[ch][padded[:, :, ch]] for ch in range(3)])
    return pp.resize_bicubic_f32(planes, CROP, CROP)


def global_view_ov_like(bgr: np.ndarray, num_crops: int) -> np.ndarray:
    """An approximation of OpenVINO GenAI's own phi3_v preprocessing (bilinear HD resize, then a
    cubic resize without antialiasing to 336): training augmentation so both runtimes agree."""
    h, w = bgr.shape[:2]
    new_h, new_w, pad_h, pad_w = pp.hd_size(h, w, num_crops)
    rgb = np.ascontiguousarray(bgr[:, :, ::-1])
    resized = cv2.resize(rgb, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    padded = np.full((pad_h, pad_w, 3), 255, np.uint8)
    top, left = (pad_h - new_h) // 2, (pad_w - new_w) // 2
    padded[top : top + new_h, left : left + new_w] = resized
    if pad_h != CROP or pad_w != CROP:
        padded = cv2.resize(padded, (CROP, CROP), interpolation=cv2.INTER_CUBIC)
    return np.stack([pp._NORM_LUT[ch][padded[:, :, ch]] for ch in range(3)])


def targets(scene: Scene) -> tuple[np.ndarray, np.ndarray]:
    """Per third: shape class (0 empty, 1.. SHAPES) and color class (-100 where empty)."""
    shape = np.zeros(3, np.int64)
    color = np.full(3, -100, np.int64)
    for s in scene.shapes:
        t = POSITIONS.index(s.position)
        shape[t] = SHAPES.index(s.shape) + 1
        color[t] = COLORS.index(s.color)
    return shape, color


class Trunk(nn.Module):
    """Per crop: [B,3,336,336] -> [B,TRUNK_CH,24,24]."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 32, 14, stride=14)
        self.conv2 = nn.Conv2d(32, 48, 3, padding=1)
        self.conv3 = nn.Conv2d(48, TRUNK_CH, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.conv1(x))
        x = torch.relu(self.conv2(x))
        return torch.relu(self.conv3(x))


def merge_2x2(f: torch.Tensor) -> torch.Tensor:
    """[B,C,24,24] -> [B,144,4C] in Phi-3.5's HD feature transform order (row-major 12x12 tokens,
    each the concat of its (dy,dx) = (0,0),(0,1),(1,0),(1,1) patches' C channels)."""
    b, c = f.shape[:2]
    x = f.permute(0, 2, 3, 1).reshape(b, MERGED, 2, MERGED, 2, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(b, MERGED * MERGED, 4 * c)


class Head(nn.Module):
    """Merged global tokens [B,144,4*TRUNK_CH] -> per-third logits [B,30] (shape 3x4, color 3x6)."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(MERGED * MERGED * 4 * TRUNK_CH, 128)
        self.fc2 = nn.Linear(128, CODE)

    def forward(self, merged: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.relu(self.fc1(merged.reshape(merged.shape[0], -1))))


def split_logits(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """[B,30] -> shape logits [B,3,4], color logits [B,3,6]."""
    b = logits.shape[0]
    return logits[:, : 3 * N_SHAPE].reshape(b, 3, N_SHAPE), logits[:, 3 * N_SHAPE :].reshape(b, 3, N_COLOR)


def scene_code(logits: torch.Tensor) -> torch.Tensor:
    """Softmax probabilities per third, concatenated: [B,30] (what the projection reads)."""
    s, c = split_logits(logits)
    return torch.cat([s.softmax(-1).flatten(1), c.softmax(-1).flatten(1)], 1)


class Vision(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.trunk = Trunk()
        self.head = Head()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(merge_2x2(self.trunk(x)))
