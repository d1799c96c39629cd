"""``dataset=synthetic_objects``: 3-D objects of eight categories rendered onto natural photos.

In the spirit of the HvM set (Majaj, Hong et al. 2015; Brain-Score's ``dicarlo.hvm``): objects of
eight categories (animals, boats, cars, chairs, faces, fruits, planes, tables), each category
built from a few exemplar objects, are shown at a varied 3-D pose, position and size over a
natural background. Here every object is a small assembly of solid 3-D primitives (ellipsoids,
boxes, cylinders, cones/frusta, tori, any of them cut by planes), rendered in numpy:

* orthographic rays are intersected analytically with each primitive in its own frame
  (quadrics and slabs; tori by sphere tracing), keeping the nearest hit in a z-buffer;
* Lambertian shading with an ambient term and one directional light;
* adaptive 3 x 3 supersampling: pixels on silhouettes, part boundaries and box edges are cast
  with 9 rays and averaged, so edges are anti-aliased (about 15 ms of CPU per 256 px image);
* composited onto a seeded crop of scikit-image's bundled photographs
  (:func:`idsim.datasets.natural.natural_crop`) or, with ``background: gray``, flat gray.

Variation levels follow HvM's idea: ``variation: 0`` shows every object centred, at a fixed
size, in its canonical pose; ``3`` rotates it up to +-45 degrees about each axis, shifts it up to
0.3 half-widths and scales it by 0.8-1.25; ``6`` rotates up to +-90 degrees, shifts up to 0.6 and
scales by 0.625-1.6; ``mixed`` cycles the three levels. The light direction varies above 0.
The z-buffer keeps unions of parts exact; there are no shadows or perspective (orthographic view).

Image ``i`` shows category ``CATEGORIES[i % 8]`` and that category's exemplar
``(i // 8) % n_exemplars`` (so any prefix is balanced); pose, colours and light come from
``np.random.default_rng([seed, i, 0])`` and the background from ``default_rng([seed, i, 1])``,
so image ``i`` depends only on ``(seed, i, size, variation, background)``, never on ``n_images``.
"""
from __future__ import annotations

import colorsys
import functools
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image

from idsim.datasets import cap
from idsim.datasets.base import ProbeSet
from idsim.datasets.natural import natural_crop, photos_digest
from idsim.schema import ProbeSetOptions, int_at_least, one_of, opt

#: bump whenever a change alters any pixel, so caches keyed on ``identity()`` invalidate
GENERATOR_VERSION = 1

CATEGORIES: tuple[str, ...] = ("animals", "boats", "cars", "chairs", "faces", "fruits", "planes", "tables")
VARIATIONS: tuple[int | str, ...] = (0, 3, 6, "mixed")
BACKGROUNDS: tuple[str, ...] = ("natural", "gray")

SUPERSAMPLE = 3          # samples per pixel side
_MIN_SIZE = 16
_BASE_RADIUS = 0.6       # object bounding radius at scale 1, in image half-widths
_Z0 = 10.0               # rays start at world z = _Z0 and travel towards -z
_BG_MIN_CROP = 0.3       # smallest background crop (fraction of the photo's shorter side)

# ---------------------------------------------------------------------------------------------
# materials: index -> how its colour is chosen per image (see _palette)
# ---------------------------------------------------------------------------------------------
MAIN, SECOND, DARK, LIGHT, GLASS, RED, BROWN, GREEN, HAIR = range(9)
_N_MAT = 9


# ---------------------------------------------------------------------------------------------
# primitives and objects
# ---------------------------------------------------------------------------------------------

def _rot(rx: float, ry: float, rz: float) -> np.ndarray:
    """Rotation matrix ``Rz @ Ry @ Rx`` for angles in degrees (x applied first)."""
    ax, ay, az = (math.radians(v) for v in (rx, ry, rz))
    cx, sx, cy, sy, cz, sz = math.cos(ax), math.sin(ax), math.cos(ay), math.sin(ay), math.cos(az), math.sin(az)
    r_x = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    r_y = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    r_z = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return r_z @ r_y @ r_x


@dataclass(frozen=True)
class Part:
    """One solid primitive of an object, in object coordinates (x forward, y up, z to the side).

    ``kind`` and the unit shape its local coordinates ``u`` fill:

    * ``ellipsoid``: ``|u| <= 1``; ``size`` = semi-axes;
    * ``box``: ``|u_k| <= 1``; ``size`` = half-extents;
    * ``cylinder``: ``u_x^2 + u_z^2 <= 1, |u_y| <= 1``; ``size`` = (radius x, half-height, radius z);
    * ``cone``: a frustum along ``u_y`` with radius 1 at ``u_y = -1`` and ``top`` at ``u_y = 1``;
    * ``torus``: ring of radius 1 in the ``u_x u_z`` plane, tube radius ``size[1] / size[0]``;
      ``size[0]`` (major radius) scales it uniformly.

    ``rot`` (degrees, ``Rz Ry Rx``) orients the part, ``center`` places it. ``clips`` are extra
    half-spaces ``n . u <= h`` (as ``(nx, ny, nz, h)`` in the unit shape's coordinates) that cut
    the solid, e.g. a hemisphere, a wedge or a triangular sail. ``mat`` is a material index.
    """

    kind: str
    center: tuple[float, float, float]
    size: tuple[float, float, float]
    rot: tuple[float, float, float] = (0.0, 0.0, 0.0)
    mat: int = MAIN
    clips: tuple[tuple[float, float, float, float], ...] = ()
    top: float = 0.0

    def affine(self) -> tuple[np.ndarray, np.ndarray]:
        """``(A, c)`` with object point ``p = c + A u`` for unit-shape point ``u``."""
        size = (self.size[0],) * 3 if self.kind == "torus" else self.size
        return _rot(*self.rot) @ np.diag(size), np.asarray(self.center, dtype=float)

    def unit_points(self) -> np.ndarray:
        """Points (n, 3) on the unit shape's boundary whose hull contains it (for bounds)."""
        t = np.linspace(0.0, 2 * np.pi, 24, endpoint=False)
        ring = np.stack([np.cos(t), np.zeros_like(t), np.sin(t)], axis=1)
        if self.kind == "box":
            return np.array([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)], float)
        if self.kind == "ellipsoid":
            k = np.arange(96) + 0.5
            phi, th = np.arccos(1 - 2 * k / 96), np.pi * (1 + 5 ** 0.5) * k
            return np.stack([np.cos(th) * np.sin(phi), np.cos(phi), np.sin(th) * np.sin(phi)], axis=1)
        if self.kind in ("cylinder", "cone"):
            top = 1.0 if self.kind == "cylinder" else max(self.top, 1e-3)
            return np.concatenate([ring + [0, -1, 0], ring * [top, 1, top] + [0, 1, 0]])
        rr = self.size[1] / self.size[0]  # torus
        return np.concatenate([ring * (1 + rr), ring + [0, rr, 0], ring - [0, rr, 0]])

    def bound_radius(self) -> float:
        """Radius of a sphere about ``center`` that contains the part (object units)."""
        return _bound_radius(self)


@functools.lru_cache(maxsize=None)
def _bound_radius(part: Part) -> float:
    a, _ = part.affine()
    return float(np.linalg.norm(part.unit_points() @ a.T, axis=1).max())


@dataclass(frozen=True)
class SolidObject:
    """A named exemplar of a category: parts plus an optional palette for its main material."""

    name: str
    category: str
    parts: tuple[Part, ...]
    main_colours: tuple[tuple[float, float, float], ...] = ()   # RGB in [0, 1]; empty: random hue
    canonical: tuple[float, float, float] = (15.0, -30.0, 0.0)  # (pitch, yaw, roll) of the V0 view

    @functools.cached_property
    def frame(self) -> tuple[np.ndarray, float]:
        """``(centre, radius)`` of the object's bounding sphere, used to normalise its size."""
        pts = np.concatenate([p.unit_points() @ p.affine()[0].T + p.affine()[1] for p in self.parts])
        centre = (pts.min(axis=0) + pts.max(axis=0)) / 2
        return centre, float(np.linalg.norm(pts - centre, axis=1).max())


# -- builders for readable object definitions ---------------------------------------------------

def _e(c, s, rot=(0, 0, 0), mat=MAIN, clips=()) -> Part:
    return Part("ellipsoid", tuple(c), tuple(s), tuple(rot), mat, tuple(clips))


def _b(c, s, rot=(0, 0, 0), mat=MAIN, clips=()) -> Part:
    return Part("box", tuple(c), tuple(s), tuple(rot), mat, tuple(clips))


def _cyl(c, r, h, rot=(0, 0, 0), mat=MAIN, clips=()) -> Part:
    return Part("cylinder", tuple(c), (r, h, r), tuple(rot), mat, tuple(clips))


def _cone(c, r, h, top=0.0, rot=(0, 0, 0), mat=MAIN, clips=()) -> Part:
    return Part("cone", tuple(c), (r, h, r), tuple(rot), mat, tuple(clips), top)


def _torus(c, big, small, rot=(0, 0, 0), mat=MAIN, clips=()) -> Part:
    return Part("torus", tuple(c), (big, small, big), tuple(rot), mat, tuple(clips))


def _limb(p0, p1, r, mat=MAIN, kind="cylinder", top=0.0) -> Part:
    """A cylinder (or cone, base at ``p0``) of radius ``r`` from ``p0`` to ``p1``."""
    p0, p1 = np.asarray(p0, float), np.asarray(p1, float)
    v = p1 - p0
    length = float(np.linalg.norm(v))
    x, y, z = v / length
    # Rx(a) then Ry(b) take local +y to (sin a sin b, cos a, sin a cos b) = v / |v|
    rx = math.degrees(math.acos(max(-1.0, min(1.0, y))))
    ry = math.degrees(math.atan2(x, z))
    c = tuple((p0 + p1) / 2)
    if kind == "cone":
        return Part("cone", c, (r, length / 2, r), (rx, ry, 0.0), mat, (), top)
    return Part("cylinder", c, (r, length / 2, r), (rx, ry, 0.0), mat)


def _wheels(xs, y, z, big, small) -> list[Part]:
    parts = []
    for x in xs:
        for side in (-1, 1):
            parts.append(_torus((x, y, side * z), big, small, rot=(90, 0, 0), mat=DARK))
            parts.append(_cyl((x, y, side * (z + small * 0.3)), big * 0.75, small * 0.5, rot=(90, 0, 0), mat=LIGHT))
    return parts


_SKIN = ((0.96, 0.80, 0.69), (0.87, 0.67, 0.53), (0.72, 0.52, 0.38), (0.55, 0.38, 0.26), (0.38, 0.26, 0.18))
_HAIR = ((0.08, 0.06, 0.05), (0.30, 0.18, 0.09), (0.55, 0.38, 0.20), (0.85, 0.72, 0.45), (0.55, 0.55, 0.55))
_WOOD = ((0.55, 0.36, 0.20), (0.72, 0.52, 0.32), (0.40, 0.25, 0.14), (0.85, 0.70, 0.50))
_FACE_VIEW = (10.0, -70.0, 0.0)  # faces look at the viewer


def _animals() -> list[SolidObject]:
    legs = lambda xs, zs, y0, y1, r: [_limb((x, y1, z), (x, y0, z), r) for x in xs for z in zs]  # noqa: E731
    dog = [
        _e((0, 0.42, 0), (0.52, 0.2, 0.19)),
        _e((0.58, 0.68, 0), (0.19, 0.17, 0.15)),
        _e((0.78, 0.62, 0), (0.14, 0.08, 0.08)),
        _e((0.92, 0.64, 0), (0.035, 0.03, 0.035), mat=DARK),
        _e((0.52, 0.78, 0.11), (0.05, 0.13, 0.04), rot=(25, 0, -15), mat=SECOND),
        _e((0.52, 0.78, -0.11), (0.05, 0.13, 0.04), rot=(-25, 0, -15), mat=SECOND),
        _e((0.7, 0.74, 0.07), (0.025, 0.025, 0.025), mat=DARK),
        _e((0.7, 0.74, -0.07), (0.025, 0.025, 0.025), mat=DARK),
        *legs((0.35, -0.35), (0.11, -0.11), 0.0, 0.4, 0.055),
        _limb((-0.48, 0.5, 0), (-0.75, 0.8, 0), 0.035),
    ]
    elephant = [
        _e((0, 0.62, 0), (0.6, 0.38, 0.36)),
        _e((0.62, 0.78, 0), (0.26, 0.27, 0.24)),
        _e((0.5, 0.8, 0.27), (0.18, 0.27, 0.04), rot=(10, 0, 0), mat=SECOND),
        _e((0.5, 0.8, -0.27), (0.18, 0.27, 0.04), rot=(-10, 0, 0), mat=SECOND),
        _limb((0.8, 0.68, 0), (0.95, 0.05, 0), 0.1, kind="cone", top=0.45),
        _limb((0.78, 0.6, 0.1), (1.0, 0.5, 0.14), 0.035, mat=LIGHT, kind="cone", top=0.1),
        _limb((0.78, 0.6, -0.1), (1.0, 0.5, -0.14), 0.035, mat=LIGHT, kind="cone", top=0.1),
        _e((0.78, 0.86, 0.13), (0.03, 0.03, 0.03), mat=DARK),
        _e((0.78, 0.86, -0.13), (0.03, 0.03, 0.03), mat=DARK),
        *legs((0.35, -0.35), (0.18, -0.18), 0.0, 0.5, 0.12),
        _limb((-0.58, 0.75, 0), (-0.72, 0.35, 0), 0.025),
    ]
    giraffe = [
        _e((0, 0.95, 0), (0.42, 0.2, 0.18)),
        _limb((0.3, 1.0, 0), (0.62, 1.7, 0), 0.075),
        _e((0.72, 1.78, 0), (0.17, 0.08, 0.08)),
        _limb((0.64, 1.84, 0.04), (0.62, 1.96, 0.04), 0.018, mat=DARK),
        _limb((0.64, 1.84, -0.04), (0.62, 1.96, -0.04), 0.018, mat=DARK),
        _e((0.6, 1.86, 0.09), (0.05, 0.025, 0.02), rot=(0, 0, 20), mat=SECOND),
        _e((0.6, 1.86, -0.09), (0.05, 0.025, 0.02), rot=(0, 0, 20), mat=SECOND),
        *legs((0.3, -0.3), (0.1, -0.1), 0.0, 0.9, 0.045),
        _limb((-0.4, 1.0, 0), (-0.55, 0.6, 0), 0.02, mat=SECOND),
    ]
    turtle = [
        _e((0, 0.05, 0), (0.55, 0.4, 0.45), mat=MAIN, clips=[(0, -1, 0, 0)]),   # dome (top half)
        _e((0, 0.05, 0), (0.58, 0.06, 0.48), mat=SECOND),                          # rim / plastron
        _e((0.66, 0.1, 0), (0.16, 0.11, 0.11), mat=SECOND),
        _e((0.74, 0.15, 0.07), (0.02, 0.02, 0.02), mat=DARK),
        _e((0.74, 0.15, -0.07), (0.02, 0.02, 0.02), mat=DARK),
        *[_e((x, -0.02, z), (0.13, 0.05, 0.08), rot=(0, ry, 0), mat=SECOND)
          for x, z, ry in ((0.38, 0.38, -40), (0.38, -0.38, 40), (-0.38, 0.36, 40), (-0.38, -0.36, -40))],
        _limb((-0.55, 0.04, 0), (-0.75, 0.0, 0), 0.04, mat=SECOND, kind="cone"),
    ]
    return [SolidObject("dog", "animals", tuple(dog)), SolidObject("elephant", "animals", tuple(elephant)),
            SolidObject("giraffe", "animals", tuple(giraffe)), SolidObject("turtle", "animals", tuple(turtle))]


def _boats() -> list[SolidObject]:
    bow = [(1, 0, 1.2, 1.0), (1, 0, -1.2, 1.0)]  # pointed bow of a box hull (local coordinates)
    sailboat = [
        _e((0, 0.05, 0), (0.9, 0.3, 0.28), clips=[(0, 1, 0, 0)]),           # hull: lower half
        _b((0.0, -0.3, 0), (0.25, 0.1, 0.015), mat=DARK),                    # keel
        _cyl((0.1, 0.85, 0), 0.02, 0.8, mat=LIGHT),                          # mast
        _b((-0.24, 0.88, 0), (0.32, 0.72, 0.008), mat=LIGHT, clips=[(-1, 1, 0, 0)]),    # mainsail
        _b((0.45, 0.78, 0), (0.33, 0.65, 0.008), mat=SECOND, clips=[(1, 1, 0, 0)]),     # jib
        _b((-0.24, 0.15, 0), (0.33, 0.015, 0.015), mat=DARK),                # boom
    ]
    motorboat = [
        _b((0, 0.05, 0), (0.85, 0.16, 0.32), clips=[*bow, (1, -1, 0, 1.3)]),
        _b((0, 0.23, 0), (0.86, 0.025, 0.33), mat=SECOND, clips=bow),        # gunwale stripe
        _b((-0.12, 0.38, 0), (0.32, 0.13, 0.24), mat=LIGHT, clips=[(1.3, 1, 0, 1.1)]),
        _b((-0.12, 0.4, 0), (0.3, 0.07, 0.245), mat=GLASS, clips=[(1.3, 1, 0, 1.2)]),
        _b((-0.9, 0.05, 0), (0.06, 0.16, 0.06), mat=DARK),                   # outboard motor
        _limb((0.2, 0.51, 0.1), (0.2, 0.62, 0.1), 0.012, mat=DARK),
    ]
    ship = [
        _b((0, 0, 0), (1.0, 0.18, 0.22), clips=[(1, 0, 3.0, 2.2), (1, 0, -3.0, 2.2), (1, -1, 0, 1.6)]),
        _b((0, -0.15, 0), (0.98, 0.04, 0.221), mat=RED, clips=[(1, 0, 3.0, 2.2), (1, 0, -3.0, 2.2)]),
        _b((-0.55, 0.33, 0), (0.25, 0.15, 0.19), mat=LIGHT),
        _b((-0.52, 0.54, 0), (0.14, 0.07, 0.21), mat=LIGHT),
        _b((-0.45, 0.55, 0), (0.05, 0.04, 0.215), mat=GLASS),
        _cyl((-0.78, 0.56, 0), 0.07, 0.17, mat=SECOND),
        _b((0.05, 0.3, 0), (0.28, 0.12, 0.17), mat=SECOND),
        _b((0.55, 0.27, 0), (0.18, 0.09, 0.16), mat=MAIN),
        _cyl((0.3, 0.55, 0), 0.015, 0.25, mat=DARK),
    ]
    canoe = [
        _e((0, 0.1, 0), (0.95, 0.22, 0.2), clips=[(0, 1, 0, 0)]),
        _e((0, 0.1, 0), (0.9, 0.02, 0.17), mat=DARK),                        # inside shadow
        _b((0.25, 0.08, 0), (0.04, 0.015, 0.19), mat=BROWN),
        _b((-0.3, 0.08, 0), (0.04, 0.015, 0.19), mat=BROWN),
        _limb((0.3, 0.05, -0.25), (-0.1, 0.5, 0.35), 0.015, mat=BROWN),      # paddle shaft
        _e((0.36, -0.01, -0.31), (0.1, 0.03, 0.06), rot=(0, 40, -48), mat=BROWN),
    ]
    return [SolidObject("sailboat", "boats", tuple(sailboat)), SolidObject("motorboat", "boats", tuple(motorboat)),
            SolidObject("ship", "boats", tuple(ship)), SolidObject("canoe", "boats", tuple(canoe))]


def _cars() -> list[SolidObject]:
    sedan = [
        _b((0, 0.35, 0), (0.95, 0.15, 0.4), clips=[(1, 1.2, 0, 1.75), (-1, 1.2, 0, 1.85)]),
        _b((-0.1, 0.6, 0), (0.48, 0.14, 0.36), mat=GLASS, clips=[(1.2, 1, 0, 1.0), (-1, 1, 0, 1.2)]),
        _b((-0.12, 0.73, 0), (0.3, 0.015, 0.365), clips=[(1, 0.1, 0, 0.95), (-1, 0.1, 0, 0.95)]),
        _e((0.93, 0.38, 0.28), (0.03, 0.04, 0.07), mat=LIGHT),
        _e((0.93, 0.38, -0.28), (0.03, 0.04, 0.07), mat=LIGHT),
        _e((-0.95, 0.4, 0.3), (0.02, 0.035, 0.06), mat=RED),
        _e((-0.95, 0.4, -0.3), (0.02, 0.035, 0.06), mat=RED),
        *_wheels((0.58, -0.58), 0.2, 0.38, 0.13, 0.065),
    ]
    truck = [
        _b((0.6, 0.58, 0), (0.32, 0.33, 0.4), clips=[(1, 1, 0, 1.5)]),
        _b((0.63, 0.75, 0), (0.3, 0.14, 0.405), mat=GLASS, clips=[(1, 1, 0, 1.5), (-1, 0, 0, 0.7)]),
        _b((-0.32, 0.6, 0), (0.58, 0.36, 0.42), mat=LIGHT),
        _b((0.05, 0.2, 0), (0.95, 0.07, 0.36), mat=DARK),
        _e((0.93, 0.38, 0.3), (0.02, 0.04, 0.06), mat=LIGHT),
        _e((0.93, 0.38, -0.3), (0.02, 0.04, 0.06), mat=LIGHT),
        *_wheels((0.6, -0.2, -0.6), 0.18, 0.4, 0.12, 0.06),
    ]
    sports = [
        _b((0, 0.26, 0), (1.0, 0.12, 0.44), clips=[(1, 2.2, 0, 1.9), (-1, 1, 0, 1.7)]),
        _e((-0.12, 0.36, 0), (0.42, 0.17, 0.3), mat=GLASS, clips=[(0, -1, 0, 0)]),
        _b((-0.92, 0.5, 0), (0.08, 0.015, 0.42), mat=SECOND),
        _b((-0.92, 0.42, 0.3), (0.03, 0.07, 0.015), mat=SECOND),
        _b((-0.92, 0.42, -0.3), (0.03, 0.07, 0.015), mat=SECOND),
        _e((0.9, 0.28, 0.3), (0.05, 0.02, 0.08), mat=LIGHT),
        _e((0.9, 0.28, -0.3), (0.05, 0.02, 0.08), mat=LIGHT),
        *_wheels((0.6, -0.6), 0.16, 0.42, 0.12, 0.06),
    ]
    bus = [
        _b((0, 0.62, 0), (1.0, 0.45, 0.38)),
        _b((0.02, 0.8, 0), (0.97, 0.11, 0.385), mat=GLASS),
        _b((1.0, 0.75, 0), (0.01, 0.22, 0.32), mat=GLASS),
        _b((0, 0.3, 0), (1.005, 0.03, 0.385), mat=SECOND),
        *_wheels((0.65, -0.6), 0.15, 0.36, 0.13, 0.06),
    ]
    return [SolidObject("sedan", "cars", tuple(sedan)), SolidObject("truck", "cars", tuple(truck)),
            SolidObject("sports_car", "cars", tuple(sports)), SolidObject("bus", "cars", tuple(bus))]


def _chairs() -> list[SolidObject]:
    dining = [
        _b((0, 0.45, 0), (0.26, 0.03, 0.26)),
        *[_b((x, 0.21, z), (0.025, 0.22, 0.025), mat=BROWN) for x in (0.22, -0.22) for z in (0.22, -0.22)],
        *[_b((-0.22, 0.76, z), (0.025, 0.3, 0.025), mat=BROWN) for z in (0.22, -0.22)],
        _b((-0.22, 0.9, 0), (0.02, 0.13, 0.2), mat=BROWN),
        _b((-0.22, 0.62, 0), (0.02, 0.03, 0.2), mat=BROWN),
    ]
    armchair = [
        _b((0.02, 0.38, 0), (0.34, 0.08, 0.29), mat=SECOND),
        _b((0, 0.2, 0), (0.38, 0.12, 0.42)),
        _b((0, 0.42, 0.36), (0.38, 0.14, 0.07)),
        _b((0, 0.42, -0.36), (0.38, 0.14, 0.07)),
        _b((-0.33, 0.62, 0), (0.07, 0.36, 0.42), rot=(0, 0, 8)),
        *[_cyl((x, 0.04, z), 0.03, 0.04, mat=DARK) for x in (0.32, -0.32) for z in (0.36, -0.36)],
    ]
    office = [_e((0, 0.52, 0), (0.27, 0.05, 0.26), mat=MAIN),
              _e((-0.27, 0.9, 0), (0.05, 0.25, 0.22), rot=(0, 0, 8), mat=MAIN),
              _b((-0.25, 0.6, 0), (0.02, 0.1, 0.04), mat=DARK),
              _cyl((0, 0.3, 0), 0.03, 0.2, mat=DARK)]
    for k in range(5):
        a = 2 * math.pi * k / 5 + 0.3
        tip = (0.3 * math.cos(a), 0.05, -0.3 * math.sin(a))
        office.append(_limb((0, 0.09, 0), tip, 0.025, mat=DARK))
        office.append(_e((tip[0], 0.03, tip[2]), (0.035, 0.03, 0.035), mat=DARK))
    stool = [
        _cyl((0, 0.7, 0), 0.2, 0.03),
        *[_limb((0.14 * math.cos(a), 0.68, 0.14 * math.sin(a)), (0.25 * math.cos(a), 0.0, 0.25 * math.sin(a)), 0.02,
                mat=BROWN) for a in (0.3, 0.3 + 2.1, 0.3 + 4.2)],
        _torus((0, 0.3, 0), 0.2, 0.012, mat=BROWN),
    ]
    return [SolidObject("dining_chair", "chairs", tuple(dining), main_colours=_WOOD),
            SolidObject("armchair", "chairs", tuple(armchair)),
            SolidObject("office_chair", "chairs", tuple(office)),
            SolidObject("stool", "chairs", tuple(stool), main_colours=_WOOD)]


def _faces() -> list[SolidObject]:
    def head(extra: list[Part], jaw: float = 1.0) -> tuple[Part, ...]:
        return (
            _e((0, 0, 0), (0.36, 0.48, 0.38)),
            _e((0.02, -0.2, 0), (0.3 * jaw, 0.31, 0.3 * jaw)),                         # jaw / chin
            _e((0.37, 0.0, 0), (0.08, 0.1, 0.05), rot=(0, 0, -15)),                   # nose
            *[_e((0.3, 0.12, z), (0.05, 0.035, 0.06), mat=LIGHT) for z in (0.13, -0.13)],
            *[_e((0.345, 0.12, z), (0.015, 0.025, 0.025), mat=DARK) for z in (0.13, -0.13)],
            *[_b((0.34, 0.2, z), (0.02, 0.013, 0.065), mat=HAIR) for z in (0.13, -0.13)],
            _e((0.3, -0.22, 0), (0.05, 0.025, 0.1), mat=RED),                         # lips
            *[_e((-0.02, 0.02, z), (0.07, 0.11, 0.03)) for z in (0.38, -0.38)],       # ears
            _cyl((-0.05, -0.6, 0), 0.17, 0.2),                                        # neck
            *extra,
        )

    short_hair = _e((-0.04, 0.06, 0), (0.39, 0.5, 0.41), mat=HAIR, clips=[(1, -1.1, 0, 0.05)])
    man = head([short_hair])
    woman = head([_e((-0.04, 0.06, 0), (0.4, 0.52, 0.42), mat=HAIR, clips=[(1, -1.3, 0, -0.05)]),
                  _e((-0.2, -0.35, 0), (0.22, 0.45, 0.42), mat=HAIR, clips=[(1, 0, 0, 0.3)])], jaw=0.9)
    bearded = head([short_hair,
                    _e((0.12, -0.3, 0), (0.26, 0.3, 0.35), mat=HAIR, clips=[(0, 1, 0, -0.05), (1, 0, 0, 0.9)]),
                    _e((0.35, -0.12, 0), (0.03, 0.025, 0.1), mat=HAIR)])
    bald = head([_e((0.33, 0.12, z), (0.015, 0.06, 0.075), mat=DARK, clips=[(-1, 0, 0, 0.3)]) for z in (0.13, -0.13)],
                jaw=1.05)
    return [SolidObject(n, "faces", p, main_colours=_SKIN, canonical=_FACE_VIEW)
            for n, p in (("man", man), ("woman", woman), ("bearded_man", bearded), ("bald_man", bald))]


def _fruits() -> list[SolidObject]:
    stem = _limb((0, 0.38, 0), (0.04, 0.58, 0), 0.02, mat=BROWN)
    apple = [_e((0, 0, 0), (0.48, 0.42, 0.48)), stem,
             _e((0.12, 0.52, 0), (0.14, 0.015, 0.06), rot=(0, 0, 25), mat=GREEN)]
    pear = [_e((0, -0.25, 0), (0.4, 0.38, 0.4)), _e((0.02, 0.18, 0), (0.24, 0.36, 0.24)),
            _limb((0.03, 0.5, 0), (0.08, 0.68, 0), 0.018, mat=BROWN)]
    rr = 0.16
    arc = [(0, 0, -1, -0.35)]  # keep the ring where local z >= 0.35 (world y below the centre): an arc
    end = math.sqrt(1 - 0.35 ** 2)
    banana = [
        _torus((0, 0.5, 0), 0.8, 0.8 * rr, rot=(90, 0, 0), clips=arc),
        *[_e((x * 0.8, 0.5 - 0.35 * 0.8, 0), (0.8 * rr * 0.9,) * 3) for x in (end, -end)],
        _limb((end * 0.8, 0.5 - 0.28, 0), (end * 0.8 + 0.12, 0.5 - 0.1, 0), 0.04, mat=BROWN),
        _e((-end * 0.8 - 0.05, 0.5 - 0.3, 0), (0.05, 0.05, 0.05), mat=DARK),
    ]
    strawberry = [
        _cone((0, -0.15, 0), 0.42, 0.38, top=0.12, rot=(0, 0, 180)),
        _e((0, 0.22, 0), (0.42, 0.12, 0.42)),
        *[_e((0.18 * math.cos(a), 0.33, 0.18 * math.sin(a)), (0.18, 0.02, 0.07),
             rot=(0, -math.degrees(a), 10), mat=GREEN) for a in np.linspace(0, 2 * np.pi, 6, endpoint=False)],
        _limb((0, 0.3, 0), (0.02, 0.48, 0), 0.025, mat=GREEN),
    ]
    return [SolidObject("apple", "fruits", tuple(apple),
                        main_colours=((0.75, 0.1, 0.08), (0.5, 0.75, 0.2), (0.9, 0.75, 0.2))),
            SolidObject("pear", "fruits", tuple(pear),
                        main_colours=((0.65, 0.75, 0.25), (0.85, 0.8, 0.3), (0.7, 0.5, 0.2))),
            SolidObject("banana", "fruits", tuple(banana), main_colours=((0.95, 0.85, 0.2), (0.75, 0.8, 0.2))),
            SolidObject("strawberry", "fruits", tuple(strawberry), main_colours=((0.85, 0.08, 0.1), (0.7, 0.05, 0.1)))]


def _planes() -> list[SolidObject]:
    def wing(root, length, chord, sweep, side, thick=0.018, mat=MAIN, dihedral=5.0, taper=0.5) -> Part:
        # a thin box swept back by `sweep` degrees, narrowing towards the tip by `taper`
        t = math.radians(sweep)
        c = (root[0] - 0.5 * length * math.sin(t), root[1] + 0.5 * length * math.sin(math.radians(dihedral)),
             side * 0.5 * length * math.cos(t))
        k = 1 - taper
        return Part("box", c, (chord, thick, length / 2), (-side * dihedral, side * -sweep, 0), mat,
                    ((side * k / 2, 0, 1, 1 + k / 2) if side > 0 else (-k / 2, 0, -1, 1 + k / 2),))

    airliner = [
        _cyl((0, 0, 0), 0.1, 0.72, rot=(0, 0, -90), mat=LIGHT),
        _e((0.72, 0, 0), (0.18, 0.1, 0.1), mat=LIGHT),
        _cone((-0.88, 0.03, 0), 0.1, 0.16, top=0.3, rot=(0, 0, 90), mat=LIGHT),
        _b((0.74, 0.04, 0), (0.04, 0.03, 0.07), mat=GLASS, clips=[(1, -1, 0, 0.3)]),
        wing((0.05, -0.04, 0), 0.95, 0.17, 28, 1), wing((0.05, -0.04, 0), 0.95, 0.17, 28, -1),
        *[_cyl((0.1 - 0.18 * abs(z), -0.11, z), 0.05, 0.12, rot=(0, 0, -90), mat=SECOND) for z in (0.32, -0.32)],
        _b((-0.85, 0.25, 0), (0.14, 0.2, 0.012), mat=MAIN, clips=[(1, 0.8, 0, 0.6)]),
        wing((-0.85, 0.04, 0), 0.36, 0.07, 30, 1, mat=MAIN), wing((-0.85, 0.04, 0), 0.36, 0.07, 30, -1, mat=MAIN),
    ]
    delta = [(1, 0, 2, 1), (1, 0, -2, 1)]
    fighter = [
        _cyl((-0.1, 0, 0), 0.09, 0.62, rot=(0, 0, -90)),
        _cone((0.72, 0, 0), 0.09, 0.2, top=0.0, rot=(0, 0, -90)),
        _b((-0.25, 0, 0), (0.5, 0.014, 0.62), clips=delta),
        _e((0.38, 0.07, 0), (0.2, 0.08, 0.06), mat=GLASS, clips=[(0, -1, 0, 0)]),
        *[_b((-0.6, 0.19, z), (0.13, 0.15, 0.01), rot=(math.copysign(15, z), 0, 0), clips=[(1, 1, 0, 0.8)], mat=SECOND)
          for z in (0.1, -0.1)],
        _cyl((-0.74, 0, 0), 0.07, 0.03, rot=(0, 0, -90), mat=DARK),
    ]
    prop = [
        _e((0, 0, 0), (0.75, 0.12, 0.12)),
        _b((0.15, 0.06, 0), (0.14, 0.016, 0.9), clips=[(0, 0, 0.25, 1.2), (0, 0, -0.25, 1.2)]),
        _e((0.3, 0.12, 0), (0.14, 0.07, 0.07), mat=GLASS),
        _b((-0.66, 0.15, 0), (0.1, 0.14, 0.01), mat=SECOND, clips=[(1, 0.7, 0, 0.6)]),
        _b((-0.66, 0.02, 0), (0.08, 0.01, 0.28), mat=SECOND),
        _cone((0.78, 0, 0), 0.06, 0.06, top=0.2, rot=(0, 0, -90), mat=DARK),
        _b((0.82, 0, 0), (0.01, 0.3, 0.03), mat=DARK),
        _b((0.82, 0, 0), (0.01, 0.03, 0.3), mat=DARK),
    ]
    view = (35.0, -30.0, 0.0)  # seen from higher up than the others, so the wings show
    return [SolidObject("airliner", "planes", tuple(airliner), canonical=view),
            SolidObject("fighter_jet", "planes", tuple(fighter), canonical=view),
            SolidObject("propeller_plane", "planes", tuple(prop), canonical=view)]


def _tables() -> list[SolidObject]:
    dining = [_b((0, 0.75, 0), (0.72, 0.03, 0.42)),
              *[_b((x, 0.36, z), (0.035, 0.36, 0.035), mat=SECOND) for x in (0.64, -0.64) for z in (0.34, -0.34)],
              _b((0, 0.68, 0), (0.62, 0.04, 0.36), mat=SECOND)]
    round_ = [_cyl((0, 0.72, 0), 0.55, 0.03), _cyl((0, 0.37, 0), 0.05, 0.33, mat=SECOND),
              _cone((0, 0.05, 0), 0.3, 0.05, top=0.4, mat=SECOND)]
    coffee = [_b((0, 0.4, 0), (0.65, 0.03, 0.36)),
              *[_cyl((x, 0.2, z), 0.03, 0.2, mat=SECOND) for x in (0.57, -0.57) for z in (0.28, -0.28)],
              _b((0, 0.12, 0), (0.58, 0.015, 0.3), mat=SECOND)]
    desk = [_b((0, 0.72, 0), (0.7, 0.03, 0.36)),
            _b((0.45, 0.35, 0), (0.22, 0.34, 0.33), mat=SECOND),
            _b((-0.64, 0.35, 0), (0.03, 0.34, 0.33), mat=SECOND),
            *[_b((0.45, y, 0.335), (0.08, 0.012, 0.01), mat=DARK) for y in (0.55, 0.33, 0.11)]]
    return [SolidObject("dining_table", "tables", tuple(dining), main_colours=_WOOD),
            SolidObject("round_table", "tables", tuple(round_)),
            SolidObject("coffee_table", "tables", tuple(coffee), main_colours=_WOOD),
            SolidObject("desk", "tables", tuple(desk))]


@functools.lru_cache(maxsize=None)
def objects() -> dict[str, tuple[SolidObject, ...]]:
    """category -> its exemplar objects (built once)."""
    out: dict[str, tuple[SolidObject, ...]] = {}
    for make in (_animals, _boats, _cars, _chairs, _faces, _fruits, _planes, _tables):
        objs = make()
        out[objs[0].category] = tuple(objs)
    assert tuple(out) == CATEGORIES
    return out


# ---------------------------------------------------------------------------------------------
# ray casting
# ---------------------------------------------------------------------------------------------

@dataclass
class Pose:
    """Where and how an object is shown: world rotation applied after its canonical view,
    centre in image half-widths (x right, y up), scale (1: bounding radius = 0.6 half-widths)."""

    rotation: tuple[float, float, float] = (0.0, 0.0, 0.0)  # degrees about world x, y, z
    position: tuple[float, float] = (0.0, 0.0)
    scale: float = 1.0
    light: tuple[float, float, float] = (-0.45, 0.6, 0.66)   # direction towards the light (world)


@dataclass
class _Cast:
    """One part, prepared for casting: world -> unit-shape map ``u = M (p - C)``."""

    part: Part
    m: np.ndarray
    c: np.ndarray
    radius: float  # bounding radius in world units
    d: list[float] = field(init=False)

    def __post_init__(self) -> None:
        self.d = [-float(v) for v in self.m[:, 2]]  # unit-shape direction of a ray going towards -z

    def origins(self, xs: np.ndarray, ys: np.ndarray) -> list[np.ndarray]:
        """Unit-shape ray origins for world ``x`` (row vector) and ``y`` (column vector)."""
        m, c = self.m, self.c
        f = np.float32
        return [f(m[k, 0]) * (xs - f(c[0])) + f(m[k, 1]) * (ys - f(c[1])) + f(m[k, 2] * (_Z0 - c[2]))
                for k in range(3)]


_EPS = 1e-9


def _slab(o: np.ndarray, d: float) -> tuple[np.ndarray, np.ndarray]:
    """Ray interval inside ``|u| <= 1`` along one axis."""
    if abs(d) < _EPS:
        inside = np.abs(o) <= 1.0
        return np.where(inside, -np.inf, np.inf), np.where(inside, np.inf, -np.inf)
    ta, tb = (-1.0 - o) / d, (1.0 - o) / d
    return (ta, tb) if d > 0 else (tb, ta)


def _quadric(a: float, b: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Roots of ``a t^2 + 2 b t + c`` (lo, hi) and where they are real."""
    disc = b * b - a * c
    real = disc >= 0
    sq = np.sqrt(np.maximum(disc, 0.0))
    r0, r1 = (-b - sq) / a, (-b + sq) / a
    return np.minimum(r0, r1), np.maximum(r0, r1), real


def _intersect(cast: _Cast, o: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Entry distance along each ray (inf where missed) and the id of the entering surface.

    Surface ids: 0 curved surface, 1-3 slab faces of axis 0-2, 10+j clip plane j.
    """
    kind, d = cast.part.kind, cast.d
    shape = np.broadcast(*o).shape
    t_in = np.full(shape, -np.inf, dtype=np.float32)
    t_out = np.full(shape, np.inf, dtype=np.float32)
    sid = np.zeros(shape, dtype=np.int8)

    def enter(t0, t1, ident) -> None:
        """Intersect the running interval with ``[t0, t1]``; remember which surface enters last."""
        nonlocal t_in, t_out, sid
        sid = np.where(t0 > t_in, ident, sid).astype(np.int8)
        t_in = np.maximum(t_in, t0)
        t_out = np.minimum(t_out, t1)

    if kind == "ellipsoid":
        a = d[0] ** 2 + d[1] ** 2 + d[2] ** 2
        lo, hi, real = _quadric(a, o[0] * d[0] + o[1] * d[1] + o[2] * d[2], o[0] ** 2 + o[1] ** 2 + o[2] ** 2 - 1.0)
        enter(np.where(real, lo, np.inf), np.where(real, hi, -np.inf), 0)
    elif kind == "box":
        for k in range(3):
            t0, t1 = _slab(o[k], d[k])
            enter(t0, t1, k + 1)
    elif kind == "cylinder":
        t0, t1 = _slab(o[1], d[1])
        enter(t0, t1, 2)
        a = float(d[0] ** 2 + d[2] ** 2)
        c = o[0] ** 2 + o[2] ** 2 - 1.0
        if a < _EPS:
            enter(np.where(c <= 0, -np.inf, np.inf), np.where(c <= 0, np.inf, -np.inf), 0)
        else:
            lo, hi, real = _quadric(a, o[0] * d[0] + o[2] * d[2], c)
            enter(np.where(real, lo, np.inf), np.where(real, hi, -np.inf), 0)
    elif kind == "cone":
        # solid x^2 + z^2 <= (al + be y)^2 inside the slab |y| <= 1 (where al + be y >= top >= 0)
        top = cast.part.top
        al, be = (1 + top) / 2, (top - 1) / 2
        s0, s1 = _slab(o[1], d[1])
        w = al + be * o[1]
        a = float(d[0] ** 2 + d[2] ** 2 - (be * d[1]) ** 2)
        if abs(a) < _EPS:
            a = _EPS
        lo, hi, real = _quadric(a, o[0] * d[0] + o[2] * d[2] - be * d[1] * w, o[0] ** 2 + o[2] ** 2 - w * w)
        if a > 0:
            enter(np.where(real, lo, np.inf), np.where(real, hi, -np.inf), 0)
            enter(s0, s1, 2)
        else:  # the quadric's inside is (-inf, lo] U [hi, inf); within the slab only one piece is kept
            first = real & (s0 <= lo)
            t0 = np.where(~real | first, s0, np.maximum(hi, s0))
            t1 = np.where(first, np.minimum(lo, s1), s1)
            ident = np.where(real & ~first & (hi > s0), 0, 2).astype(np.int8)
            enter(t0, t1, ident)
    elif kind == "torus":
        t_hit = _trace_torus(cast, o)
        enter(t_hit, np.where(np.isfinite(t_hit), t_hit, -np.inf), 0)
    else:  # pragma: no cover - kinds are internal
        raise ValueError(kind)
    if kind != "torus":
        for j, (nx, ny, nz, h) in enumerate(cast.part.clips):
            nd = nx * d[0] + ny * d[1] + nz * d[2]
            no = nx * o[0] + ny * o[1] + nz * o[2]
            if abs(nd) < _EPS:
                enter(np.where(no <= h, -np.inf, np.inf), np.where(no <= h, np.inf, -np.inf), 10 + j)
            elif nd < 0:
                enter((h - no) / nd, np.full(shape, np.inf, np.float32), 10 + j)
            else:
                enter(np.full(shape, -np.inf, np.float32), (h - no) / nd, 10 + j)
    hit = (t_in <= t_out) & np.isfinite(t_in)
    return np.where(hit, t_in, np.inf).astype(np.float32), sid


def _torus_sdf(part: Part, p: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Signed distance (unit-shape units) to the clipped torus, and which term is active (-1 torus)."""
    rr = part.size[1] / part.size[0]
    ring = np.sqrt(p[0] ** 2 + p[2] ** 2)
    dist = np.sqrt((ring - 1.0) ** 2 + p[1] ** 2) - rr
    which = np.full(dist.shape, -1, dtype=np.int8)
    for j, (nx, ny, nz, h) in enumerate(part.clips):
        plane = (nx * p[0] + ny * p[1] + nz * p[2] - h) / math.sqrt(nx * nx + ny * ny + nz * nz)
        which = np.where(plane > dist, np.int8(j), which)
        dist = np.maximum(dist, plane)
    return dist, which


def _trace_torus(cast: _Cast, o: list[np.ndarray], steps: int = 48) -> np.ndarray:
    """Sphere-trace the (clipped) torus: entry distance (world ``t``, inf where missed)."""
    part, d = cast.part, cast.d
    rr = part.size[1] / part.size[0]
    dn = math.sqrt(d[0] ** 2 + d[1] ** 2 + d[2] ** 2)
    u = [v / dn for v in d]
    shape = np.broadcast(*o).shape
    ox, oy, oz = (np.broadcast_to(v, shape).ravel() for v in o)
    b = ox * u[0] + oy * u[1] + oz * u[2]
    disc = b * b - (ox ** 2 + oy ** 2 + oz ** 2 - (1 + rr) ** 2)
    out = np.full(ox.shape, np.inf, dtype=np.float32)
    idx = np.nonzero(disc > 0)[0]
    if idx.size == 0:
        return out.reshape(shape)
    sq = np.sqrt(disc[idx])
    s, s_end = -b[idx] - sq, -b[idx] + sq
    px, py, pz = ox[idx], oy[idx], oz[idx]
    active = np.arange(idx.size)
    done = np.zeros(idx.size, dtype=bool)
    for _ in range(steps):
        sa = s[active]
        p = [px[active] + sa * u[0], py[active] + sa * u[1], pz[active] + sa * u[2]]
        dist, _ = _torus_sdf(part, p)
        s[active] = sa + dist
        conv = dist < 2e-4
        done[active[conv]] = True
        keep = ~conv & (s[active] < s_end[active])
        active = active[keep]
        if active.size == 0:
            break
    hit = done & (s <= s_end)
    out[idx[hit]] = s[hit] / dn
    return out.reshape(shape)


def _normals(cast: _Cast, o: list[np.ndarray], t: np.ndarray, sid: np.ndarray) -> np.ndarray:
    """World-space unit normals (3, n) at the entry points of the given rays (1-d arrays)."""
    part, d = cast.part, cast.d
    p = [o[k] + t * d[k] for k in range(3)]
    zero = np.zeros_like(t)
    kind = part.kind
    if kind == "ellipsoid":
        n = p
    elif kind == "box":
        n = [np.where(sid == k + 1, np.sign(p[k]), 0.0) for k in range(3)]
    elif kind == "cylinder":
        cap = sid == 2
        n = [np.where(cap, 0.0, p[0]), np.where(cap, np.sign(p[1]), 0.0), np.where(cap, 0.0, p[2])]
    elif kind == "cone":
        top = part.top
        al, be = (1 + top) / 2, (top - 1) / 2
        cap = sid == 2
        n = [np.where(cap, 0.0, p[0]), np.where(cap, np.sign(p[1]), -be * (al + be * p[1])), np.where(cap, 0.0, p[2])]
    else:  # torus
        _, which = _torus_sdf(part, p)
        ring = np.maximum(np.sqrt(p[0] ** 2 + p[2] ** 2), 1e-6)
        n = [p[0] * (1 - 1 / ring), p[1], p[2] * (1 - 1 / ring)]
        sid = np.where(which >= 0, which + 10, 0)
    for j, (nx, ny, nz, _) in enumerate(part.clips):
        on = sid == 10 + j
        n = [np.where(on, nx, n[0]), np.where(on, ny, n[1]), np.where(on, nz, n[2])]
    n_loc = np.stack([np.asarray(v, dtype=np.float32) + zero for v in n])
    n_w = cast.m.T.astype(np.float32) @ n_loc  # normals transform with the inverse transpose
    n_w /= np.maximum(np.linalg.norm(n_w, axis=0, keepdims=True), 1e-12)
    return n_w


def _casts(obj: SolidObject, pose: Pose) -> list[_Cast]:
    """Prepare every part of ``obj`` for casting under ``pose``."""
    pitch, yaw, roll = obj.canonical
    r_obj = _rot(*pose.rotation) @ _rot(pitch, yaw, roll)
    centre, radius = obj.frame
    s = pose.scale * _BASE_RADIUS / radius
    t = np.array([pose.position[0], pose.position[1], 0.0])
    casts = []
    for part in obj.parts:
        a, c = part.affine()
        world_a = s * r_obj @ a
        casts.append(_Cast(part, np.linalg.inv(world_a), t + s * r_obj @ (c - centre), s * part.bound_radius()))
    return casts


def _cast(casts: list[_Cast], xs: np.ndarray, ys: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cast one ray per sample (world ``xs``, ``ys``, 1-d float32): nearest entry distance
    (inf where nothing is hit), index of the visible part (-1: none) and its surface id."""
    zbuf = np.full(xs.shape, np.inf, dtype=np.float32)
    pid = np.full(xs.shape, -1, dtype=np.int16)
    sid = np.zeros(xs.shape, dtype=np.int8)
    for q, cs in enumerate(casts):
        r = np.float32(cs.radius)
        sel = np.nonzero((np.abs(xs - np.float32(cs.c[0])) <= r) & (np.abs(ys - np.float32(cs.c[1])) <= r))[0]
        if sel.size == 0:
            continue
        t, s = _intersect(cs, cs.origins(xs[sel], ys[sel]))
        win = t < zbuf[sel]
        idx = sel[win]
        zbuf[idx] = t[win]
        pid[idx] = q
        sid[idx] = np.broadcast_to(s, t.shape)[win]
    return zbuf, pid, sid


def _shade(casts: list[_Cast], xs: np.ndarray, ys: np.ndarray, t: np.ndarray, pid: np.ndarray, sid: np.ndarray,
           light: np.ndarray, colours: np.ndarray, ambient: float, diffuse: float) -> np.ndarray:
    """Colour (n, 3) of each sample: albedo x (ambient + Lambertian diffuse); zero where no hit."""
    out = np.zeros((xs.size, 3), dtype=np.float32)
    for q, cs in enumerate(casts):
        idx = np.nonzero(pid == q)[0]
        if idx.size == 0:
            continue
        nrm = _normals(cs, cs.origins(xs[idx], ys[idx]), t[idx], sid[idx])
        lam = np.maximum(light @ nrm, 0.0)
        sky = 0.875 + 0.125 * nrm[1]  # a little more ambient light from above than from below
        out[idx] = colours[cs.part.mat][None, :] * (ambient * sky + diffuse * lam)[:, None]
    return out


def render(obj: SolidObject, pose: Pose, colours: np.ndarray, size: int, supersample: int = SUPERSAMPLE,
           ambient: float = 0.32, diffuse: float = 0.78) -> tuple[np.ndarray, np.ndarray]:
    """Render ``obj`` alone: premultiplied colour ``(size, size, 3)`` and coverage ``(size, size)``,
    float32 in [0, 1]. ``colours`` is ``(n_materials, 3)`` RGB albedo in [0, 1].

    Adaptive supersampling: one ray per pixel first; every pixel whose 3 x 3 neighbourhood sees
    more than one surface (silhouettes, part boundaries, box edges) and every pixel near a part
    too small to be sampled reliably is then cast again with ``supersample^2`` rays and averaged.
    """
    casts = _casts(obj, pose)
    colour = np.zeros((size, size, 3), dtype=np.float32)
    alpha = np.zeros((size, size), dtype=np.float32)
    # the world square [-1, 1]^2 maps onto the image (x right, y up); pixel (r, c) has its centre
    # at x = (c + 0.5) * 2 / size - 1, y = 1 - (r + 0.5) * 2 / size
    to_px = lambda v: (v + 1.0) * size / 2.0  # noqa: E731  world -> pixel coordinate
    boxes = []
    for cs in casts:
        x0, x1 = to_px(cs.c[0] - cs.radius), to_px(cs.c[0] + cs.radius)
        y0, y1 = to_px(-cs.c[1] - cs.radius), to_px(-cs.c[1] + cs.radius)
        boxes.append((max(0, math.floor(x0) - 1), min(size, math.ceil(x1) + 1),
                      max(0, math.floor(y0) - 1), min(size, math.ceil(y1) + 1)))
    live = [b for b in boxes if b[1] > b[0] and b[3] > b[2]]
    if not live:
        return colour, alpha
    wx0, wx1 = min(b[0] for b in live), max(b[1] for b in live)
    wy0, wy1 = min(b[2] for b in live), max(b[3] for b in live)
    h, w = wy1 - wy0, wx1 - wx0
    step = np.float32(2.0 / size)
    cols = (np.arange(wx0, wx1, dtype=np.float32) + 0.5) * step - 1.0
    rows = 1.0 - (np.arange(wy0, wy1, dtype=np.float32) + 0.5) * step
    xs, ys = np.broadcast_to(cols[None, :], (h, w)).ravel(), np.broadcast_to(rows[:, None], (h, w)).ravel()
    light = np.asarray(pose.light, dtype=np.float32)
    light /= np.linalg.norm(light)

    # pass 1: pixel centres
    t, pid, sid = _cast(casts, xs, ys)
    key = (pid.astype(np.int32) * 64 + sid).reshape(h, w)
    pad = np.pad(key, 1, mode="edge")
    edge = np.zeros((h, w), dtype=bool)
    for dy in (0, 1, 2):
        for dx in (0, 1, 2):
            if (dy, dx) != (1, 1):
                edge |= pad[dy:dy + h, dx:dx + w] != key
    for cs, (bx0, bx1, by0, by1) in zip(casts, boxes):
        if cs.radius * size / 2.0 < 2.5:  # thin or tiny part: could fall between pixel centres
            edge[max(by0 - wy0, 0):by1 - wy0, max(bx0 - wx0, 0):bx1 - wx0] = True
    edge = edge.ravel()
    inner = ~edge
    col = np.zeros((h * w, 3), dtype=np.float32)
    cov = np.zeros(h * w, dtype=np.float32)
    ii = np.nonzero(inner)[0]
    col[ii] = _shade(casts, xs[ii], ys[ii], t[ii], pid[ii], sid[ii], light, colours, ambient, diffuse)
    cov[ii] = pid[ii] >= 0

    # pass 2: supersample the edge pixels
    ei = np.nonzero(edge)[0]
    if ei.size:
        k = supersample
        off = ((np.arange(k, dtype=np.float32) + 0.5) / k - 0.5) * step
        sx = (xs[ei][:, None, None] + off[None, None, :]).repeat(k, axis=1).ravel()
        sy = (ys[ei][:, None, None] - off[None, :, None]).repeat(k, axis=2).ravel()
        st, sp, ss = _cast(casts, sx, sy)
        rgb = _shade(casts, sx, sy, st, sp, ss, light, colours, ambient, diffuse)
        col[ei] = rgb.reshape(ei.size, k * k, 3).mean(axis=1)
        cov[ei] = (sp >= 0).reshape(ei.size, k * k).mean(axis=1)
    colour[wy0:wy1, wx0:wx1] = col.reshape(h, w, 3)
    alpha[wy0:wy1, wx0:wx1] = cov.reshape(h, w)
    np.clip(colour, 0.0, 1.0, out=colour)
    return colour, alpha


# ---------------------------------------------------------------------------------------------
# the probe set
# ---------------------------------------------------------------------------------------------

def _hsv(h: float, s: float, v: float) -> tuple[float, float, float]:
    return colorsys.hsv_to_rgb(h % 1.0, s, v)


def _palette(rng: np.random.Generator, obj: SolidObject) -> np.ndarray:
    """Per-image material colours (n_materials, 3). Always makes the same number of draws."""
    h_main, h_second = rng.uniform(), rng.uniform()
    s_main, v_main = rng.uniform(0.35, 0.85), rng.uniform(0.55, 0.95)
    s_second, v_second = rng.uniform(0.2, 0.8), rng.uniform(0.35, 0.9)
    pick, hair, jitter = rng.uniform(), rng.integers(len(_HAIR)), rng.uniform(0.9, 1.1, size=3)
    main = (np.array(obj.main_colours[int(pick * len(obj.main_colours))]) * jitter
            if obj.main_colours else np.array(_hsv(h_main, s_main, v_main)))
    pal = np.zeros((_N_MAT, 3))
    pal[MAIN] = main
    if obj.category in ("chairs", "tables", "animals"):  # a darker shade of the main colour
        pal[SECOND] = main * (0.55 + 0.25 * h_second)
    else:  # a contrasting hue
        pal[SECOND] = _hsv(h_main + 0.25 + 0.5 * h_second, s_second, v_second)
    pal[DARK] = (0.08, 0.08, 0.09)
    pal[LIGHT] = (0.9, 0.9, 0.88)
    pal[GLASS] = (0.16, 0.22, 0.3)
    pal[RED] = (0.75, 0.12, 0.1)
    pal[BROWN] = (0.4, 0.26, 0.13)
    pal[GREEN] = (0.2, 0.55, 0.15)
    pal[HAIR] = _HAIR[int(hair)]
    return np.clip(pal, 0.0, 1.0).astype(np.float32)


_RANGES = {  # variation level -> (max rotation per axis in degrees, max |shift| in half-widths, scale range)
    0: (0.0, 0.0, (1.0, 1.0)),
    3: (45.0, 0.3, (0.8, 1.25)),
    6: (90.0, 0.6, (0.625, 1.6)),
}


class SyntheticObjectsProbeSet(ProbeSet):
    """Rendered 3-D objects of eight categories on natural backgrounds, labelled by category.

    Build it from :class:`SyntheticObjectsOptions` (which checks the values); the arguments are its
    fields.

    Args:
        n_images: how many images the set holds.
        seed: generator seed.
        size: side of the square RGB images in pixels.
        variation: 0, 3, 6 (HvM-like ranges of pose, position and scale) or ``"mixed"``
            (the three levels in turn, one per run of 8 images; balanced over every 24 images).
        background: ``"natural"`` (crops of scikit-image's photographs) or ``"gray"``.
    """

    name = "synthetic_objects"
    categories: tuple[str, ...] = CATEGORIES

    def __init__(self, *, n_images: int, seed: int, size: int, variation: int | str, background: str):
        self.n_images, self.seed, self.size = int(n_images), int(seed), int(size)
        self.variation, self.background = variation, background

    def __len__(self) -> int:
        return self.n_images

    def level(self, i: int) -> int:
        """Variation level (0, 3 or 6) of image ``i``."""
        if self.variation == "mixed":  # each run of 8 images (one per category) shares a level;
            b = self._index(i) // len(CATEGORIES)  # the (b + b // 3) pattern pairs every exemplar with every level
            return (0, 3, 6)[(b + b // 3) % 3]
        return int(self.variation)

    def object(self, i: int) -> SolidObject:
        """The exemplar object image ``i`` shows."""
        i = self._index(i)
        exemplars = objects()[CATEGORIES[i % len(CATEGORIES)]]
        return exemplars[(i // len(CATEGORIES)) % len(exemplars)]

    def scene(self, i: int) -> tuple[SolidObject, Pose, np.ndarray]:
        """Object, pose and material colours of image ``i`` (from ``default_rng([seed, i, 0])``)."""
        obj = self.object(i)
        rng = np.random.default_rng([self.seed, self._index(i), 0])
        max_rot, max_shift, (s_lo, s_hi) = _RANGES[self.level(i)]
        rot = rng.uniform(-1.0, 1.0, size=3) * max_rot
        shift = rng.uniform(-1.0, 1.0, size=2) * max_shift
        scale = math.exp(rng.uniform(math.log(s_lo), math.log(s_hi)))
        az, el = math.radians(rng.uniform(-60, 60)), math.radians(rng.uniform(15, 65))
        light = (math.sin(az) * math.cos(el), math.sin(el), math.cos(az) * math.cos(el))
        colours = _palette(rng, obj)
        if self.level(i) == 0:
            light = Pose().light
        pose = Pose(tuple(float(v) for v in rot), (float(shift[0]), float(shift[1])), scale, light)
        return obj, pose, colours

    def render(self, i: int) -> tuple[Image.Image, np.ndarray]:
        """Image ``i`` and the object's coverage mask ((size, size) float32 in [0, 1])."""
        obj, pose, colours = self.scene(i)
        premult, alpha = render(obj, pose, colours, self.size)
        if self.background == "gray":
            bg = np.full((self.size, self.size, 3), 0.5, dtype=np.float32)
        else:
            rng = np.random.default_rng([self.seed, self._index(i), 1])
            bg = natural_crop(rng, self.size, _BG_MIN_CROP).astype(np.float32) * np.float32(1 / 255)
        img = premult + bg * (1.0 - alpha)[:, :, None]
        return Image.fromarray(np.clip(img * 255.0 + 0.5, 0, 255).astype(np.uint8), "RGB"), alpha

    def image(self, i: int) -> Image.Image:
        return self.render(i)[0]

    def label(self, i: int) -> str:
        return CATEGORIES[self._index(i) % len(CATEGORIES)]

    def stimulus_id(self, i: int) -> str:
        i = self._index(i)
        return f"synthetic_objects-{self.seed}-{i:05d}-{self.label(i)}-{self.object(i).name}"

    def identity(self) -> dict[str, Any]:
        ident = {
            "name": self.name,
            "generator_version": GENERATOR_VERSION,
            "seed": self.seed,
            "size": self.size,
            "n_images": self.n_images,
            "variation": self.variation,
            "background": self.background,
        }
        if self.background == "natural":
            ident["photos_digest"] = photos_digest()
        return ident

    def __repr__(self) -> str:
        return (f"SyntheticObjectsProbeSet(n_images={self.n_images}, seed={self.seed}, size={self.size},"
                f" variation={self.variation!r}, background={self.background!r})")


@dataclass
class SyntheticObjectsOptions(ProbeSetOptions):
    """``dataset=synthetic_objects``: rendered 3-D objects of eight categories
    (conf/dataset/synthetic_objects.yaml)."""

    name: str = "synthetic_objects"
    # how many images the set holds (image i never depends on it)
    n_images: int = opt(160, "a positive integer (how many images)", int_at_least(1))
    # generator seed; the YAML follows the run's `seed`
    seed: int = opt(0, "an integer >= 0 (the generator seed)", int_at_least(0))
    # side of the square images in pixels
    size: int = opt(256, f"an integer >= {_MIN_SIZE} (pixels)", int_at_least(_MIN_SIZE))
    # 0: canonical pose, centred, fixed size; 3: +-45 deg rotations, small shifts/scales;
    # 6: +-90 deg about every axis, shifts up to 0.6 half-widths, scale 0.625-1.6; mixed: cycles 0/3/6
    variation: Any = opt(6, "0 (canonical pose), 3, 6 (the widest) or mixed (all three in turn)", one_of(*VARIATIONS))
    # natural (crops of scikit-image's photographs) | gray (flat, object only)
    background: str = opt("natural", "natural (crops of scikit-image's photographs) or gray (the object alone)",
                          one_of(*BACKGROUNDS))

    def build(self) -> SyntheticObjectsProbeSet:
        return cap(SyntheticObjectsProbeSet(n_images=self.n_images, seed=self.seed, size=self.size,
                                            variation=self.variation, background=self.background), self.n_images)
