"""The synthetic part-annotated benchmark (the embedded default's data).

Each category is a kinematic tree of parts (ellipses, tapered limbs, fans, discs, rounded
boxes) in a *template* (rest-pose) frame, y down, about two units long. Every part has a
local frame: ``u`` along its axis (0 at the joint, 1 at the tip; discs are centred, u in
[-0.5, 0.5]) and ``v`` across it (-1..1 of its half-width). A keypoint is a point (part, u, v).

Per instance we draw independently: part proportions (length and width), joint articulation,
a similarity transform (rotation, scale, translation) and a horizontal flip, per-part colours
and textures (two colours, one of six texture kinds, bound to the part's local frame so they
bend with it), a cluttered textured background with part-like distractors, and occluders.

Ground truth per instance:

* ``parts``: (H, W) uint8 label image, 0 = background / occluded, 1..P = part (the order of
  :func:`part_names`);
* ``canonical``: (H, W, 2) float32 template coordinates of each visible object pixel (NaN
  elsewhere): the rest-pose position of the pixel's local (u, v) on its part. Two pixels of
  different instances with the same part label and canonical coordinate are the same
  physical point, so the dense correspondence between any two instances is known;
* keypoints ``[x, y, visible]``: visible = 1 exactly when the pixel under the keypoint
  (rounded) shows the keypoint's own part (not an occluder, not another part in front).

A horizontal flip mirrors the rendered instance and swaps left/right names (keypoints and
parts); the canonical coordinate of a mirrored pixel is that of the mirror-image point
(the partner part, and ``v -> -v`` for top-view categories), so canonical maps, part labels
and keypoint names stay consistent. All rendering is vectorised numpy (no per-pixel loops).
"""
from __future__ import annotations

import colorsys
import json
import logging
import math
import zlib
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from ..io import atomic_path
from ..progress import Progress
from .generic import write_dataset
from .model import CategorySpec, Dataset, Instance

log = logging.getLogger(__name__)

CATEGORIES = ("bird", "quadruped", "car", "aircraft", "fish")

# ----------------------------------------------------------------------------- templates


@dataclass(frozen=True)
class Part:
    """One rigid part. joint: (u, v) on the parent (root: template xy of the origin);
    angle: rest angle (deg) relative to the parent's axis (root: absolute); length, width:
    template units (width = full width); shape: ellipse | taper | superellipse | disc;
    w0, w1: taper half-widths (relative) at u=0 and u=1; shear: centre line v = shear * u;
    power: superellipse exponent; z: drawing order; artic: articulation range (+- deg);
    eye: optional (u, v, radius in units of the half-width) dark dot painted on the part."""

    name: str
    parent: str | None
    joint: tuple[float, float]
    angle: float
    length: float
    width: float
    shape: str = "ellipse"
    w0: float = 1.0
    w1: float = 1.0
    shear: float = 0.0
    power: float = 4.0
    z: float = 0.0
    artic: float = 10.0
    eye: tuple[float, float, float] | None = None


@dataclass(frozen=True)
class Template:
    """A category: parts (in label order 1..P), keypoints name -> (part, u, v), the mirror
    sign (+1 side view: v kept under a flip; -1 top view: v negated) and the partner of each
    part / keypoint name under a flip."""

    name: str
    parts: tuple[Part, ...]
    keypoints: dict[str, tuple[str, float, float]]
    mirror_sign: int
    part_flip: dict[str, str] = field(default_factory=dict)
    kp_flip: dict[str, str] = field(default_factory=dict)

    def part_index(self) -> dict[str, int]:
        return {p.name: i for i, p in enumerate(self.parts)}


def _swap_lr(name: str) -> str:
    if name.startswith("L_"):
        return "R_" + name[2:]
    if name.startswith("R_"):
        return "L_" + name[2:]
    return name


def _build(name: str, parts: list[Part], kps: dict[str, tuple[str, float, float]], mirror_sign: int,
           far: dict[str, dict] | None = None) -> Template:
    """Complete a template: every ``L_`` part gets an ``R_`` partner (top view: the mirror image;
    side view: the far-side copy with the overrides in ``far``), every keypoint on an ``L_`` part
    gets its ``R_`` partner at (u, mirror_sign * v)."""
    far = far or {}
    out: list[Part] = []
    for p in parts:
        out.append(p)
    for p in parts:
        if p.name.startswith("L_"):
            rname = _swap_lr(p.name)
            parent = _swap_lr(p.parent) if p.parent else None
            if mirror_sign < 0:
                r = replace(p, name=rname, parent=parent, joint=(p.joint[0], -p.joint[1]) if p.parent else p.joint,
                            angle=-p.angle, shear=-p.shear)
            else:
                r = replace(p, name=rname, parent=parent, **far.get(rname, {}))
            out.append(r)
    kp_all = dict(kps)
    for k, (pn, u, v) in kps.items():
        if pn.startswith("L_"):
            assert k.startswith("L_"), k
            kp_all[_swap_lr(k)] = (_swap_lr(pn), u, mirror_sign * v if mirror_sign < 0 else v)
    names = [p.name for p in out]
    part_flip = {n: (_swap_lr(n) if _swap_lr(n) in names else n) for n in names}
    kp_flip = {k: (_swap_lr(k) if _swap_lr(k) in kp_all else k) for k in kp_all}
    # order: parents before children for forward kinematics is handled separately
    return Template(name, tuple(out), kp_all, mirror_sign, part_flip, kp_flip)


def _bird() -> Template:
    P = Part
    parts = [
        P("body", None, (-0.55, 0.05), -8, 1.1, 0.55, "ellipse", z=2, artic=8),
        P("head", "body", (0.9, -0.45), -15, 0.38, 0.34, "ellipse", z=4, artic=20, eye=(0.55, -0.2, 0.22)),
        P("beak", "head", (0.92, 0.1), 10, 0.3, 0.15, "taper", w0=1.0, w1=0.08, z=5, artic=12),
        P("tail", "body", (0.06, -0.1), 172, 0.55, 0.36, "taper", w0=0.3, w1=1.0, z=1, artic=20),
        P("L_wing", "body", (0.62, -0.35), 176, 0.78, 0.32, "taper", w0=0.9, w1=0.3, shear=0.35, z=6, artic=25),
        P("L_leg", "body", (0.5, 0.8), 80, 0.42, 0.09, "taper", w0=1.0, w1=0.7, z=3, artic=20),
    ]
    far = {"R_wing": dict(joint=(0.66, -0.65), angle=196, z=0.0),
           "R_leg": dict(joint=(0.38, 0.82), angle=96, z=0.5)}
    kps = {
        "Beak_Tip": ("beak", 0.78, 0.0), "Crown": ("head", 0.45, -0.65), "Tail_Tip": ("tail", 0.9, 0.0),
        "Belly": ("body", 0.45, 0.7), "L_Wing_Tip": ("L_wing", 0.85, 0.3), "L_Wing_Base": ("L_wing", 0.15, 0.05),
        "L_Foot": ("L_leg", 0.9, 0.0),
    }
    return _build("bird", parts, kps, +1, far)


def _quadruped() -> Template:
    P = Part
    parts = [
        P("body", None, (-0.7, -0.1), 0, 1.4, 0.6, "superellipse", power=2.6, z=3, artic=5),
        P("neck", "body", (0.86, -0.4), -50, 0.45, 0.3, "taper", w0=1.0, w1=0.75, z=4, artic=15),
        P("head", "neck", (0.95, 0.0), 55, 0.46, 0.3, "taper", w0=1.0, w1=0.55, z=5, artic=15, eye=(0.3, -0.35, 0.25)),
        P("ear", "head", (0.22, -0.75), -105, 0.2, 0.13, "taper", w0=1.0, w1=0.1, z=6, artic=15),
        P("tail", "body", (0.03, -0.45), 200, 0.55, 0.09, "taper", w0=1.0, w1=0.4, z=2, artic=30),
        P("L_front_upper", "body", (0.82, 0.55), 90, 0.45, 0.17, "taper", w0=1.0, w1=0.8, z=7, artic=22),
        P("L_front_lower", "L_front_upper", (0.92, 0.0), 0, 0.42, 0.12, "taper", w0=1.0, w1=0.85, z=7.5, artic=22),
        P("L_hind_upper", "body", (0.18, 0.5), 90, 0.5, 0.22, "taper", w0=1.0, w1=0.6, z=7, artic=22),
        P("L_hind_lower", "L_hind_upper", (0.92, 0.0), 0, 0.45, 0.11, "taper", w0=1.0, w1=0.85, z=7.5, artic=22),
    ]
    far = {"R_front_upper": dict(joint=(0.72, 0.45), z=1.0), "R_front_lower": dict(z=1.5),
           "R_hind_upper": dict(joint=(0.1, 0.45), z=1.0), "R_hind_lower": dict(z=1.5)}
    kps = {
        "Nose": ("head", 0.9, 0.0), "Ear_Tip": ("ear", 0.75, 0.0), "Tail_Tip": ("tail", 0.9, 0.0),
        "Withers": ("body", 0.6, -0.8),
        "L_Front_Knee": ("L_front_lower", 0.06, 0.0), "L_Front_Paw": ("L_front_lower", 0.92, 0.0),
        "L_Back_Knee": ("L_hind_lower", 0.06, 0.0), "L_Back_Paw": ("L_hind_lower", 0.92, 0.0),
    }
    return _build("quadruped", parts, kps, +1, far)


def _car() -> Template:
    P = Part
    parts = [
        P("body", None, (-1.0, 0.0), 0, 2.0, 0.5, "superellipse", power=4.0, z=2, artic=2),
        P("cabin", "body", (0.55, -0.85), -90, 0.42, 1.0, "taper", w0=1.0, w1=0.62, shear=-0.25, z=1, artic=4),
        P("L_front_wheel", "body", (0.78, 0.75), 0, 0.44, 0.44, "disc", z=3, artic=180),
        P("L_rear_wheel", "body", (0.2, 0.75), 0, 0.44, 0.44, "disc", z=3, artic=180),
    ]
    far = {"R_front_wheel": dict(joint=(0.85, 0.95), z=0.0), "R_rear_wheel": dict(joint=(0.27, 0.95), z=0.0)}
    kps = {
        "Front_Bumper": ("body", 0.95, 0.2), "Rear_Bumper": ("body", 0.05, 0.2),
        "Roof_Front": ("cabin", 0.85, 0.3), "Roof_Rear": ("cabin", 0.85, -0.7),
        "L_Front_Wheel": ("L_front_wheel", 0.0, 0.0), "L_Rear_Wheel": ("L_rear_wheel", 0.0, 0.0),
    }
    return _build("car", parts, kps, +1, far)


def _aircraft() -> Template:
    P = Part
    parts = [
        P("fuselage", None, (-1.0, 0.0), 0, 2.0, 0.28, "ellipse", z=3, artic=0),
        P("L_wing", "fuselage", (0.55, -0.6), -100, 0.9, 0.36, "taper", w0=1.0, w1=0.35, shear=-0.8, z=2, artic=10),
        P("L_stabilizer", "fuselage", (0.08, -0.5), -110, 0.38, 0.2, "taper", w0=1.0, w1=0.4, shear=-0.5, z=2, artic=10),
        P("L_engine", "L_wing", (0.42, 0.55), 100, 0.34, 0.13, "ellipse", z=4, artic=5),
    ]
    kps = {
        "Nose_Tip": ("fuselage", 0.96, 0.0), "Tail_End": ("fuselage", 0.04, 0.0),
        "L_WingTip": ("L_wing", 0.9, -0.72), "L_Wing_Base": ("L_wing", 0.3, 0.3),
        "L_Stabilizer_Tip": ("L_stabilizer", 0.88, -0.44), "L_Engine_Front": ("L_engine", 0.88, 0.0),
    }
    return _build("aircraft", parts, kps, -1)


def _fish() -> Template:
    P = Part
    parts = [
        P("body", None, (-0.8, 0.0), 0, 1.6, 0.7, "ellipse", z=2, artic=6, eye=(0.85, -0.3, 0.14)),
        P("tail", "body", (0.06, 0.0), 180, 0.5, 0.62, "taper", w0=0.3, w1=1.0, z=1, artic=25),
        P("dorsal", "body", (0.5, -0.85), -125, 0.36, 0.32, "taper", w0=1.0, w1=0.15, shear=0.3, z=1, artic=15),
        P("anal", "body", (0.3, 0.85), 125, 0.26, 0.22, "taper", w0=1.0, w1=0.15, shear=-0.3, z=1, artic=15),
        P("L_fin", "body", (0.68, 0.3), 150, 0.32, 0.17, "taper", w0=1.0, w1=0.45, z=3, artic=25),
    ]
    far = {"R_fin": dict(joint=(0.74, 0.55), angle=135, z=1.5)}
    kps = {
        "Mouth": ("body", 0.97, 0.05), "Tail_Top": ("tail", 0.9, -0.7), "Tail_Bottom": ("tail", 0.9, 0.7),
        "Dorsal_Tip": ("dorsal", 0.8, 0.24), "Anal_Tip": ("anal", 0.78, -0.23),
        "L_Fin_Tip": ("L_fin", 0.85, 0.0), "L_Fin_Base": ("L_fin", 0.15, 0.0),
    }
    return _build("fish", parts, kps, +1, far)


_TEMPLATES = {"bird": _bird, "quadruped": _quadruped, "car": _car, "aircraft": _aircraft, "fish": _fish}


def template(category: str) -> Template:
    """The template of a synthetic category (one of :data:`CATEGORIES`)."""
    if category not in _TEMPLATES:
        raise ValueError(f"unknown synthetic category '{category}' (known: {', '.join(CATEGORIES)})")
    return _TEMPLATES[category]()


def part_names(category: str) -> list[str]:
    """Part names in label order: label k (1..P) is ``part_names(c)[k - 1]``."""
    return [p.name for p in template(category).parts]


def category_spec(category: str) -> CategorySpec:
    t = template(category)
    pairs = sorted({tuple(sorted((k, v))) for k, v in t.kp_flip.items() if k != v})
    # left name first
    pairs = [(a, b) if a.startswith("L_") else (b, a) for a, b in pairs]
    return CategorySpec(list(t.keypoints), pairs)


# ----------------------------------------------------------------------------- kinematics


@dataclass
class PartPose:
    """A part's placed local frame (its pose): origin (2,), axis angle (rad), length, half-width."""

    origin: np.ndarray
    angle: float
    length: float
    half: float

    def matrix(self) -> np.ndarray:
        """(2, 2): columns = the images of the local unit u and v vectors."""
        c, s = math.cos(self.angle), math.sin(self.angle)
        return np.array([[c * self.length, -s * self.half], [s * self.length, c * self.half]])

    def point(self, u, v) -> np.ndarray:
        """(..., 2) template point of local (u, v)."""
        m = self.matrix()
        u = np.asarray(u, dtype=np.float64)
        v = np.asarray(v, dtype=np.float64)
        return self.origin + u[..., None] * m[:, 0] + v[..., None] * m[:, 1]


def _order(t: Template) -> list[int]:
    """Part indices, parents before children."""
    idx = t.part_index()
    done: list[int] = []
    seen: set[str] = set()
    while len(done) < len(t.parts):
        for i, p in enumerate(t.parts):
            if p.name not in seen and (p.parent is None or p.parent in seen):
                seen.add(p.name)
                done.append(i)
    assert all(p.parent is None or p.parent in idx for p in t.parts)
    return done


def pose(t: Template, angles: np.ndarray | None = None, length_scale: np.ndarray | None = None,
         width_scale: np.ndarray | None = None) -> list[PartPose]:
    """Forward kinematics: one PartPose (placed local frame) per part (template units).
    angles: (P,) articulation offsets in degrees; length_scale, width_scale: (P,) proportion
    factors (default 0 / 1)."""
    n = len(t.parts)
    angles = np.zeros(n) if angles is None else angles
    ls = np.ones(n) if length_scale is None else length_scale
    ws = np.ones(n) if width_scale is None else width_scale
    idx = t.part_index()
    frames: list[PartPose | None] = [None] * n
    for i in _order(t):
        p = t.parts[i]
        if p.parent is None:
            origin, base = np.array(p.joint, dtype=np.float64), 0.0
        else:
            pf = frames[idx[p.parent]]
            origin, base = pf.point(*p.joint), pf.angle
        frames[i] = PartPose(origin, base + math.radians(p.angle + angles[i]), p.length * ls[i], p.width * ws[i] / 2)
    return frames  # type: ignore[return-value]


def _local_extent(p: Part) -> tuple[float, float, float, float]:
    """(u_min, u_max, v_min, v_max) bounding the part's shape in local coordinates."""
    if p.shape == "disc":
        return -0.5, 0.5, -1.0, 1.0
    vmin = min(0.0, p.shear) - 1.0
    vmax = max(0.0, p.shear) + 1.0
    return 0.0, 1.0, vmin, vmax


def _shape_r(p: Part, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Normalised radius of local points: <= 1 inside the part's shape."""
    if p.shape == "ellipse":
        return np.sqrt((2 * u - 1) ** 2 + v**2)
    if p.shape == "disc":
        return np.sqrt((2 * u) ** 2 + v**2)
    if p.shape == "superellipse":
        return (np.abs(2 * u - 1) ** p.power + np.abs(v) ** p.power) ** (1 / p.power)
    if p.shape == "taper":
        w = p.w0 + (p.w1 - p.w0) * np.clip(u, 0, 1)
        ru = np.abs(2 * u - 1)
        rv = np.abs(v - p.shear * u) / np.maximum(w, 1e-6)
        # rounded corners: an L4 blend of the two directions
        return (ru**4 + rv**4) ** 0.25
    raise ValueError(p.shape)


def _outline(t: Template, frames: list[PartPose]) -> np.ndarray:
    """(K, 2) points bounding every part (the corners of each local extent box)."""
    pts = []
    for p, f in zip(t.parts, frames):
        u0, u1, v0, v1 = _local_extent(p)
        uu, vv = np.meshgrid([u0, (u0 + u1) / 2, u1], [v0, (v0 + v1) / 2, v1])
        pts.append(f.point(uu.ravel(), vv.ravel()))
    return np.concatenate(pts)


def template_keypoints(category: str) -> dict[str, np.ndarray]:
    """name -> (2,) template (rest-pose) position of each keypoint."""
    t = template(category)
    frames = pose(t)
    idx = t.part_index()
    return {k: frames[idx[pn]].point(u, v) for k, (pn, u, v) in t.keypoints.items()}


# ----------------------------------------------------------------------------- sampling


@dataclass
class InstanceParams:
    """Everything random about one instance (see :func:`sample_params`)."""

    angles: np.ndarray          # (P,) articulation offsets, degrees
    length_scale: np.ndarray    # (P,)
    width_scale: np.ndarray     # (P,)
    rotation: float             # degrees
    scale: float                # relative to the nominal size
    flip: bool
    position: np.ndarray        # (2,) in [0, 1]: where the object sits within the free room
    appearance_seed: int        # colours, textures, background, occluders, noise
    n_occluders: int


def sample_params(t: Template, rng: np.random.Generator, occluders: int = 2,
                  rotation_deg: float = 30.0, scale_range: tuple[float, float] = (0.6, 1.2)) -> InstanceParams:
    n = len(t.parts)
    artic = np.array([p.artic for p in t.parts])
    angles = rng.uniform(-1, 1, n) * artic
    ls = rng.uniform(0.82, 1.2, n)
    ws = rng.uniform(0.78, 1.25, n)
    # paired parts share proportions (an animal's two wings have the same size)
    idx = t.part_index()
    for name, other in t.part_flip.items():
        if name.startswith("R_"):
            ls[idx[name]], ws[idx[name]] = ls[idx[other]], ws[idx[other]]
    return InstanceParams(
        angles=angles, length_scale=ls, width_scale=ws,
        rotation=float(rng.uniform(-rotation_deg, rotation_deg)),
        scale=float(rng.uniform(*scale_range)), flip=bool(rng.random() < 0.5),
        position=rng.random(2), appearance_seed=int(rng.integers(2**31)),
        n_occluders=int(rng.integers(0, occluders + 1)) if occluders > 0 else 0,
    )


# ----------------------------------------------------------------------------- appearance


def _random_colour(rng: np.random.Generator) -> np.ndarray:
    h, s, v = rng.random(), rng.uniform(0.15, 0.95), rng.uniform(0.2, 0.98)
    return np.array(colorsys.hsv_to_rgb(h, s, v))


def _texture(kind: int, a: np.ndarray, b: np.ndarray, rng: np.random.Generator, px: float) -> np.ndarray:
    """A texture value in [0, 1] over metric local coordinates a, b (pixels)."""
    period = rng.uniform(3.0, 14.0) * px
    th = rng.uniform(0, np.pi)
    ph = rng.uniform(0, 2 * np.pi)
    ca, sb = math.cos(th), math.sin(th)
    if kind == 0:   # plain
        return np.zeros_like(a)
    if kind == 1:   # stripes
        return 0.5 + 0.5 * np.sin(2 * np.pi * (a * ca + b * sb) / period + ph)
    if kind == 2:   # checker
        return ((np.floor((a * ca + b * sb) / period) + np.floor((b * ca - a * sb) / period)) % 2).astype(np.float64)
    if kind == 3:   # blotches: sum of random sinusoids
        out = np.zeros_like(a)
        for _ in range(4):
            t2 = rng.uniform(0, 2 * np.pi)
            p2 = rng.uniform(1.5, 4.0) * period
            out += np.sin(2 * np.pi * (a * math.cos(t2) + b * math.sin(t2)) / p2 + rng.uniform(0, 6.3))
        return (out > rng.uniform(-0.5, 0.5)).astype(np.float64) * 0.8 + 0.1 * (out / 4 + 1)
    if kind == 4:   # spots
        g = (np.sin(2 * np.pi * a / period + ph) * np.sin(2 * np.pi * b / period)) > 0.55
        return g.astype(np.float64)
    # gradient
    return np.clip(0.5 + (a * ca + b * sb) / (8 * period), 0, 1)


def _paint_region(img, rs, cs, mask, a, b, r, rng, px, shade=True):
    """Paint a textured, shaded region into img[rs, cs] where mask (a, b: metric local
    coordinates, r: normalised radius for rim shading)."""
    c1, c2 = _random_colour(rng), _random_colour(rng)
    kind = int(rng.integers(0, 6))
    amp = rng.uniform(0.4, 1.0)
    tex = _texture(kind, a[mask], b[mask], rng, px) * amp
    col = c1[None, :] * (1 - tex[:, None]) + c2[None, :] * tex[:, None]
    if shade:
        rim = 1.0 - 0.45 * np.clip(r[mask], 0, 1) ** 6
        col = col * rim[:, None]
    sub = img[rs, cs]
    sub[mask] = col
    img[rs, cs] = sub


def _region(corners: np.ndarray, size: int):
    """Row and column slices (clipped to the image) covering the (K, 2) xy corners, plus the
    pixel-centre grids (x, y) of that region; None when outside."""
    x0 = max(int(np.floor(corners[:, 0].min())), 0)
    x1 = min(int(np.ceil(corners[:, 0].max())) + 1, size)
    y0 = max(int(np.floor(corners[:, 1].min())), 0)
    y1 = min(int(np.ceil(corners[:, 1].max())) + 1, size)
    if x0 >= x1 or y0 >= y1:
        return None
    ys, xs = np.mgrid[y0:y1, x0:x1].astype(np.float64)
    return slice(y0, y1), slice(x0, x1), xs, ys


def _to_local(m: np.ndarray, c: np.ndarray, xs: np.ndarray, ys: np.ndarray):
    """Local (u, v) of image points under the affine map p = c + m @ (u, v)."""
    inv = np.linalg.inv(m)
    dx, dy = xs - c[0], ys - c[1]
    return inv[0, 0] * dx + inv[0, 1] * dy, inv[1, 0] * dx + inv[1, 1] * dy


_DISTRACTORS = (
    Part("d_ellipse", None, (0, 0), 0, 1, 1, "ellipse"),
    Part("d_taper", None, (0, 0), 0, 1, 1, "taper", w0=1.0, w1=0.3),
    Part("d_box", None, (0, 0), 0, 1, 1, "superellipse", power=5.0),
    Part("d_disc", None, (0, 0), 0, 1, 1, "disc"),
    Part("d_fan", None, (0, 0), 0, 1, 1, "taper", w0=0.3, w1=1.0, shear=0.3),
)


def _random_primitive(rng, size_px: float, centre: np.ndarray):
    p = _DISTRACTORS[int(rng.integers(len(_DISTRACTORS)))]
    length = size_px * rng.uniform(0.6, 1.4)
    half = length * rng.uniform(0.15, 0.6)
    ang = rng.uniform(0, 2 * np.pi)
    f = PartPose(np.zeros(2), ang, length, half)
    m = f.matrix()
    u0, u1, v0, v1 = _local_extent(p)
    mid = m @ np.array([(u0 + u1) / 2, (v0 + v1) / 2])
    c = centre - mid
    return p, m, c


def _draw_primitive(img, p, m, c, rng, size, px, label=None, label_value=0):
    u0, u1, v0, v1 = _local_extent(p)
    uu, vv = np.meshgrid([u0, u1], [v0, v1])
    corners = c + np.stack([uu.ravel(), vv.ravel()], 1) @ m.T
    reg = _region(corners, size)
    if reg is None:
        return
    rs, cs, xs, ys = reg
    u, v = _to_local(m, c, xs, ys)
    r = _shape_r(p, u, v)
    mask = r <= 1
    if not mask.any():
        return
    a = u * np.linalg.norm(m[:, 0])
    b = v * np.linalg.norm(m[:, 1])
    _paint_region(img, rs, cs, mask, a, b, r, rng, px)
    if label is not None:
        sub = label[rs, cs]
        sub[mask] = label_value
        label[rs, cs] = sub


def _background(size: int, rng: np.random.Generator, px: float) -> np.ndarray:
    """(size, size, 3) float cluttered textured background in [0, 1]."""
    import cv2

    base = cv2.resize(rng.random((4, 4, 3)).astype(np.float32), (size, size), interpolation=cv2.INTER_CUBIC)
    fine = cv2.resize(rng.random((16, 16, 3)).astype(np.float32), (size, size), interpolation=cv2.INTER_LINEAR)
    img = np.clip(0.75 * base + 0.25 * fine, 0, 1).astype(np.float64)
    grey = img.mean(-1, keepdims=True)
    img = grey + rng.uniform(0.3, 0.8) * (img - grey)        # less saturated than objects, on average
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float64)
    tex = _texture(int(rng.integers(1, 6)), xs, ys, rng, px)
    tint = _random_colour(rng)
    w = rng.uniform(0.15, 0.4)
    img = img * (1 - w * tex[..., None]) + w * tex[..., None] * tint
    for _ in range(int(rng.integers(4, 10))):
        p, m, c = _random_primitive(rng, size * rng.uniform(0.06, 0.24), rng.uniform(0, size, 2))
        _draw_primitive(img, p, m, c, rng, size, px)
    return img


# ----------------------------------------------------------------------------- rendering


@dataclass
class Rendered:
    """One rendered instance.

    image:     (H, W, 3) uint8 RGB
    parts:     (H, W) uint8 part labels (0 = background / occluded)
    canonical: (H, W, 2) float32 template coordinates (NaN off the visible object)
    keypoints: name -> (x, y, visible)
    bbox:      (xmin, ymin, xmax, ymax) of the whole object (occluded pixels included)
    """

    image: np.ndarray
    parts: np.ndarray
    canonical: np.ndarray
    keypoints: dict[str, tuple[float, float, int]]
    bbox: tuple[float, float, float, float]


FILL_RANGE = (0.38, 0.74)  # bounds of the outline's long side / image side (pixels: ~35-70 %)
NOMINAL_FILL = 0.6   # object long side / image side at scale 1 (0.6-1.2 -> 35-70 %)


def render_instance(t: Template, params: InstanceParams, size: int, noise: float = 3.0) -> Rendered:
    """Render one instance of template ``t`` at ``size`` x ``size`` pixels."""
    import cv2

    n = len(t.parts)
    rng = np.random.default_rng(params.appearance_seed)
    px = size / 256.0
    frames = pose(t, params.angles, params.length_scale, params.width_scale)
    rest = pose(t)
    # similarity: template -> image
    rest_pts = _outline(t, rest)
    rest_long = float(np.max(rest_pts.max(0) - rest_pts.min(0)))
    pts = _outline(t, frames)
    th = math.radians(params.rotation)
    rot = np.array([[math.cos(th), -math.sin(th)], [math.sin(th), math.cos(th)]])
    margin = 2.0
    k = params.scale * NOMINAL_FILL * size / rest_long
    q = pts @ rot.T * k
    ext = q.max(0) - q.min(0)
    # keep the object's long side within FILL_RANGE of the image (articulation and rotation
    # change the extent), and inside the image
    long_side = float(ext.max())
    k *= float(np.clip(long_side, FILL_RANGE[0] * size, FILL_RANGE[1] * size)) / max(long_side, 1e-9)
    ext = ext * (k / (params.scale * NOMINAL_FILL * size / rest_long))
    k *= min(1.0, float(np.min((size - 1 - 2 * margin) / np.maximum(ext, 1e-9))))
    lin = rot * k
    q = pts @ lin.T
    lo, hi = q.min(0), q.max(0)
    room_lo = margin - lo
    room_hi = size - 1 - margin - hi
    trans = room_lo + params.position * np.maximum(room_hi - room_lo, 0)

    img = _background(size, rng, px)
    label = np.zeros((size, size), np.int16)          # part index + 1
    uu = np.full((size, size), np.nan)
    vv = np.full((size, size), np.nan)
    order = sorted(range(n), key=lambda i: t.parts[i].z)
    mats = []
    for i in range(n):
        m = lin @ frames[i].matrix()
        c = lin @ frames[i].origin + trans
        mats.append((m, c))
    objmask = np.zeros((size, size), bool)
    for i in order:
        p = t.parts[i]
        m, c = mats[i]
        u0, u1, v0, v1 = _local_extent(p)
        cu, cv = np.meshgrid([u0, u1], [v0, v1])
        corners = c + np.stack([cu.ravel(), cv.ravel()], 1) @ m.T
        reg = _region(corners, size)
        if reg is None:
            continue
        rs, cs, xs, ys = reg
        u, v = _to_local(m, c, xs, ys)
        r = _shape_r(p, u, v)
        mask = r <= 1
        if not mask.any():
            continue
        a = u * np.linalg.norm(m[:, 0])
        b = v * np.linalg.norm(m[:, 1])
        _paint_region(img, rs, cs, mask, a, b, r, rng, px)
        if p.eye is not None:
            eu, ev, er = p.eye
            half_px = np.linalg.norm(m[:, 1])
            d = np.hypot(a - eu * np.linalg.norm(m[:, 0]), b - ev * half_px)
            emask = mask & (d <= er * half_px)
            sub = img[rs, cs]
            sub[emask] = np.array([0.05, 0.05, 0.05])
            sub[mask & (d <= er * half_px * 0.4)] = np.array([0.9, 0.9, 0.9])
            img[rs, cs] = sub
        for buf, val in ((label, i + 1), (uu, u), (vv, v)):
            sub = buf[rs, cs]
            sub[mask] = val if np.isscalar(val) else val[mask]
            buf[rs, cs] = sub
        objmask[rs, cs] |= mask
    ys_o, xs_o = np.nonzero(objmask)
    bbox = (float(xs_o.min()), float(ys_o.min()), float(xs_o.max()), float(ys_o.max()))
    # occluders: centred on random object pixels, sized relative to the object
    obj_long = max(bbox[2] - bbox[0], bbox[3] - bbox[1]) + 1
    for _ in range(params.n_occluders):
        j = int(rng.integers(len(xs_o)))
        centre = np.array([xs_o[j], ys_o[j]], dtype=np.float64)
        p, m, c = _random_primitive(rng, obj_long * rng.uniform(0.15, 0.32), centre)
        _draw_primitive(img, p, m, c, rng, size, px, label=label, label_value=0)
    # sensor: blur + noise
    img = cv2.GaussianBlur(img.astype(np.float32), (0, 0), 0.6 * px)
    img = img * 255 + rng.normal(0, noise, img.shape)
    image = np.clip(np.round(img), 0, 255).astype(np.uint8)

    # keypoints (before the flip)
    idx = t.part_index()
    kps = {}
    for name, (pn, u, v) in t.keypoints.items():
        i = idx[pn]
        m, c = mats[i]
        x, y = c + m @ np.array([u, v])
        xi, yi = int(round(x)), int(round(y))
        vis = int(0 <= xi < size and 0 <= yi < size and label[yi, xi] == i + 1)
        kps[name] = (float(x), float(y), vis)

    # canonical coordinates (with the mirror map when flipped)
    on = label > 0
    lab_idx = label.astype(np.int64) - 1
    canon = np.full((size, size, 2), np.nan, np.float32)
    part_map = np.arange(n)
    sgn = 1.0
    if params.flip:
        part_map = np.array([idx[t.part_flip[p.name]] for p in t.parts])
        sgn = float(t.mirror_sign)
    li = part_map[lab_idx[on]]
    o = np.stack([rest[i].origin for i in range(n)])
    mm = np.stack([rest[i].matrix() for i in range(n)])
    uv = np.stack([uu[on], sgn * vv[on]], 1)
    canon[on] = (o[li] + np.einsum("kij,kj->ki", mm[li], uv)).astype(np.float32)
    out_label = np.zeros((size, size), np.uint8)
    out_label[on] = (part_map[lab_idx[on]] + 1).astype(np.uint8)

    if params.flip:
        image = image[:, ::-1].copy()
        out_label = out_label[:, ::-1].copy()
        canon = canon[:, ::-1].copy()
        kps = {t.kp_flip[nm]: (size - 1 - x, y, vis) for nm, (x, y, vis) in kps.items()}
        bbox = (size - 1 - bbox[2], bbox[1], size - 1 - bbox[0], bbox[3])
    kps = {nm: kps[nm] for nm in t.keypoints}
    return Rendered(image, out_label, canon, kps, bbox)


# ----------------------------------------------------------------------------- the dataset


def instance_rng(seed: int, category: str, index: int) -> np.random.Generator:
    """The generator of instance ``index`` of ``category`` (independent of the other
    categories and of how many images are generated)."""
    return np.random.default_rng([seed, zlib.crc32(category.encode("utf-8")), index])


def _render_to_files(out: Path, cat: str, k: int, seed: int, occluders: int, image_size: int,
                     image_format: str) -> tuple[tuple[float, float, float, float], dict]:
    """Render instance ``k`` of ``cat`` and write its image, part map and canonical map under
    ``out``; returns its (bbox, keypoints). Depends on nothing but its arguments (the instance's
    own generator, :func:`instance_rng`), so instances can be rendered in any order and process."""
    from PIL import Image

    t = template(cat)
    r = render_instance(t, sample_params(t, instance_rng(seed, cat, k), occluders), image_size)
    stem = f"{k:04d}"
    im = Image.fromarray(r.image)
    if image_format in ("jpg", "jpeg"):
        im.save(out / f"images/{cat}/{stem}.{image_format}", quality=94)
    else:
        im.save(out / f"images/{cat}/{stem}.{image_format}")
    Image.fromarray(r.parts).save(out / f"gt/{cat}/{stem}_parts.png")
    np.save(out / f"gt/{cat}/{stem}_canon.npy", r.canonical)
    return r.bbox, r.keypoints


def _render_task(task: tuple) -> tuple:
    return _render_to_files(*task)


def _rendered(tasks: list[tuple], workers: int):
    """:func:`_render_to_files` of each task, in the tasks' order; on ``workers`` > 1 worker
    processes (forked, where the platform can fork) render them concurrently. Each instance's
    files and result are the same either way: every instance draws from its own generator."""
    import multiprocessing

    if workers <= 1 or len(tasks) < 2 or "fork" not in multiprocessing.get_all_start_methods():
        yield from map(_render_task, tasks)
        return
    from concurrent.futures import ProcessPoolExecutor

    n = min(int(workers), len(tasks))
    with ProcessPoolExecutor(n, mp_context=multiprocessing.get_context("fork")) as pool:
        yield from pool.map(_render_task, tasks, chunksize=max(1, len(tasks) // (8 * n)))


def generate(out_dir: str | Path, categories=("bird", "quadruped", "car", "aircraft"),
             images_per_category: int = 40, image_size: int = 256, pairs_per_category: int = 60,
             seed: int = 0, occluders: int = 2, train_fraction: float = 0.8,
             image_format: str = "jpg", progress: bool = False, workers: int = 1) -> Dataset:
    """Generate the benchmark under ``out_dir`` and return its Dataset.

    Writes ``images/<cat>/<k>.<image_format>``, ``gt/<cat>/<k>_parts.png`` (uint8 labels),
    ``gt/<cat>/<k>_canon.npy`` ((H, W, 2) float32), ``gt/templates.json`` (per category: part
    names in label order, template keypoint positions, mirror sign) and ``dataset.json`` (last,
    atomically). Split: the first ``round(n * train_fraction)`` instances of each category are
    "train" (instances are i.i.d.; at least two are "test"). Pairs: ``pairs_per_category`` ordered (source, target)
    pairs of distinct *test* instances (fewer when there are fewer test pairs), drawn without
    replacement. Deterministic given ``seed``; ``workers`` processes render the images
    (byte-identical files for any count: each instance has its own generator).
    """
    out = Path(out_dir)
    cats: dict[str, CategorySpec] = {}
    instances: list[Instance] = []
    pairs: list[tuple[str, str]] = []
    templates_info = {}
    it = list(categories)
    n_train = int(round(images_per_category * train_fraction))
    n_train = min(max(n_train, 1), images_per_category - min(2, images_per_category - 1))
    for cat in it:
        t = template(cat)
        cats[cat] = category_spec(cat)
        tk = template_keypoints(cat)
        templates_info[cat] = {
            "parts": part_names(cat), "mirror_sign": t.mirror_sign,
            "keypoints": {k: [round(float(v[0]), 6), round(float(v[1]), 6)] for k, v in tk.items()},
            "keypoint_parts": {k: v[0] for k, v in t.keypoints.items()},
        }
        (out / "images" / cat).mkdir(parents=True, exist_ok=True)
        (out / "gt" / cat).mkdir(parents=True, exist_ok=True)
    tasks = [(out, cat, k, seed, occluders, image_size, image_format)
             for cat in it for k in range(images_per_category)]
    results = Progress(_rendered(tasks, workers), total=len(tasks), desc="synthetic " + ", ".join(it), unit="img",
                       leave=False, disable=not progress, logger=log)
    for i, (bbox, keypoints) in enumerate(results):
        cat, k = tasks[i][1], tasks[i][2]
        stem = f"{k:04d}"
        instances.append(Instance(f"{cat}/{stem}", f"images/{cat}/{stem}.{image_format}", cat, bbox, keypoints,
                                  "train" if k < n_train else "test", f"gt/{cat}/{stem}_parts.png",
                                  f"gt/{cat}/{stem}_canon.npy"))
    for cat in it:
        test_ids = [f"{cat}/{k:04d}" for k in range(n_train, images_per_category)]
        cand = [(a, b) for a in test_ids for b in test_ids if a != b]
        prng = np.random.default_rng([seed, zlib.crc32(cat.encode("utf-8")), 2**31 - 1])
        take = min(pairs_per_category, len(cand))
        sel = prng.choice(len(cand), size=take, replace=False) if take else []
        pairs.extend(cand[j] for j in sorted(int(s) for s in sel))
    with atomic_path(out / "gt" / "templates.json") as tmp:
        tmp.write_text(json.dumps(templates_info, indent=1) + "\n")
    ds = Dataset("synthetic", out, cats, instances, pairs)
    write_dataset(ds, out / "dataset.json")
    return ds
