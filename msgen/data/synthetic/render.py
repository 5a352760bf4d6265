"""The synthetic people's renderer: articulated people seen from any side, with exact keypoints.

Each identity has a fixed appearance in which the views differ -- a logo only on the front of the
shirt, another colour on its back, a face seen only from the front and hair from every side (long
hair hangs over the back) -- so one source cannot show everything a target in another view needs;
that is what makes several sources useful. Each image draws that identity in a fresh pose (walking
or free arm/leg angles) under a fresh view angle, framing and background.

The body is a 3D skeleton (body frame: X = the person's left, Y = down, Z = the person's forward)
turned by a yaw about the vertical axis and projected orthographically. Yaw 0 faces the camera
("front"), 90 degrees shows the person's right side ("right"), 180 the back; the file names carry
the nearest of eight view labels. Parts are painted far to near (painter's algorithm on the depth
of each part), so far-side limbs are hidden behind the torso and near limbs cover it. Drawing uses
Pillow's polygon/line/ellipse primitives on a 2x supersampled canvas, reduced with a box filter.

Keypoint policy: every body point is written as present even when a limb hides it (what OpenPose
mostly reports on real photos); the face points follow the head's own occlusion: nose and eyes are
written as missing (-1) when they face away from the camera, an ear when it is on the far side of
the head. Keypoints are rounded to whole pixels, as the public annotation files are. A point that
falls outside the image (a raised hand above the top edge: the framing fits the head, not the
hands) is written as missing, as a detector run on the image would report it and as msgen.pose
crops do (``msgen.pose.framing``); ``in_frame`` does that for every rendered pose.

Files and the command line: ``msgen.data.synthetic.write``.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

VIEW_NAMES = ("front", "frontright", "right", "backright", "back", "backleft", "left", "frontleft")

# Keypoint indices in the CSV order (METHOD.md, "Data conventions").
NOSE, NECK, RSHO, RELB, RWRI, LSHO, LELB, LWRI = range(8)
RHIP, RKNE, RANK, LHIP, LKNE, LANK, LEYE, REYE, LEAR, REAR = range(8, 18)

SUPERSAMPLE = 2

# Body dimensions in "units" (a person is about 8.5 units tall; neck at the origin, Y down).
SHOULDER_Y, HIP_Y = 0.25, 3.0
HEAD_Y = -0.95
UPPER_ARM, FOREARM, THIGH, SHIN = 1.45, 1.3, 2.0, 1.9
TORSO_HALF_DEPTH = 0.45
WIDTH = {"upper_arm": 0.42, "forearm": 0.36, "thigh": 0.62, "shin": 0.5, "neck": 0.42, "foot": 0.34}

SKIN_TONES = np.array(
    [[255, 224, 196], [241, 194, 125], [224, 172, 105], [198, 134, 66], [141, 85, 36], [92, 58, 36]]
)
HAIR_COLOURS = np.array(
    [[20, 17, 15], [60, 40, 25], [110, 70, 35], [200, 160, 90], [165, 60, 30], [150, 150, 150]]
)
LOGO_SHAPES = ("circle", "diamond", "star", "bands", "triangle", "cross")


@dataclass(frozen=True)
class Appearance:
    """What stays fixed for one identity. Colours are RGB tuples in 0..255."""

    skin: tuple[int, int, int]
    hair: tuple[int, int, int]
    long_hair: bool
    shirt_front: tuple[int, int, int]
    shirt_back: tuple[int, int, int]
    logo_shape: str
    logo_colour: tuple[int, int, int]
    long_sleeves: bool
    trousers: tuple[int, int, int]
    shorts: bool
    shoes: tuple[int, int, int]
    shoulder_half_width: float
    hip_half_width: float
    head_radius: float


@dataclass(frozen=True)
class BodyPose:
    """One image's pose, view and framing. Angles in radians; (right, left) pairs."""

    yaw: float
    arm_swing: tuple[float, float]  # forward rotation of the upper arm
    arm_abduction: tuple[float, float]  # sideways lift of the arm (pi/2 = horizontal)
    elbow: tuple[float, float]  # forward bend of the forearm
    leg_swing: tuple[float, float]
    leg_abduction: tuple[float, float]
    knee: tuple[float, float]  # backward bend of the shin
    height_fraction: float  # person height / image height (before fitting the width)
    shift: tuple[float, float]  # (y, x) position of the person in its free margin, in [0, 1]


def _colour(rgb: np.ndarray) -> tuple[int, int, int]:
    r, g, b = np.clip(np.rint(rgb), 0, 255).astype(int)
    return int(r), int(g), int(b)


def _hsv_colour(rng: np.random.Generator, hue: float) -> np.ndarray:
    """A clothing colour of the given hue with random saturation and value."""
    saturation, value = rng.uniform(0.35, 0.95), rng.uniform(0.3, 0.95)
    k = (np.array([5.0, 3.0, 1.0]) + hue * 6.0) % 6.0
    return 255 * value * (1 - saturation * np.clip(np.minimum(k, 4 - k), 0, 1))


def sample_appearance(rng: np.random.Generator) -> Appearance:
    """Draw one identity's clothes, colours and proportions."""
    front_hue = rng.uniform()
    front = _hsv_colour(rng, front_hue)
    back = front
    while np.abs(back - front).sum() < 150:  # the back is always clearly another colour
        back = _hsv_colour(rng, (front_hue + rng.uniform(0.25, 0.75)) % 1.0)
    logo = 255 - front + rng.uniform(-40, 40, 3)  # contrasting with the shirt
    return Appearance(
        skin=_colour(SKIN_TONES[rng.integers(len(SKIN_TONES))] + rng.uniform(-12, 12, 3)),
        hair=_colour(HAIR_COLOURS[rng.integers(len(HAIR_COLOURS))] + rng.uniform(-10, 10, 3)),
        long_hair=bool(rng.random() < 0.4),
        shirt_front=_colour(front),
        shirt_back=_colour(back),
        logo_shape=LOGO_SHAPES[rng.integers(len(LOGO_SHAPES))],
        logo_colour=_colour(logo),
        long_sleeves=bool(rng.random() < 0.5),
        trousers=_colour(_hsv_colour(rng, rng.uniform()) * rng.uniform(0.4, 1.0)),
        shorts=bool(rng.random() < 0.3),
        shoes=_colour(rng.uniform(10, 120) + rng.uniform(-10, 10, 3)),
        shoulder_half_width=float(rng.uniform(0.85, 1.1)),
        hip_half_width=float(rng.uniform(0.5, 0.7)),
        head_radius=float(rng.uniform(0.52, 0.64)),
    )


def sample_pose(rng: np.random.Generator) -> BodyPose:
    """Draw a view (one of eight, jittered by up to 15 degrees) and a walking or free pose."""
    yaw = math.radians(45 * rng.integers(8) + rng.uniform(-15, 15))
    if rng.random() < 0.5:  # walking: legs and arms swing in opposition
        phase, amplitude = rng.uniform(0, 2 * math.pi), rng.uniform(0.15, 0.55)
        swing = amplitude * math.sin(phase)
        back_knee = rng.uniform(0.2, 0.6)  # the trailing leg bends
        arm_swing = (-0.9 * swing, 0.9 * swing)
        arm_abduction = tuple(rng.uniform(0.05, 0.25, 2))
        elbow = tuple(rng.uniform(0.1, 0.7, 2))
        leg_swing = (swing, -swing)
        leg_abduction = tuple(rng.uniform(0.0, 0.08, 2))
        knee = (back_knee, 0.05) if swing < 0 else (0.05, back_knee)
    else:  # free: arms anywhere from hanging to raised, legs roughly standing
        arm_swing = tuple(rng.uniform(-0.6, 1.3, 2))
        arm_abduction = tuple(rng.uniform(0.05, 2.4, 2))
        elbow = tuple(rng.uniform(0.0, 2.0, 2))
        leg_swing = tuple(rng.uniform(-0.3, 0.3, 2))
        leg_abduction = tuple(rng.uniform(0.0, 0.3, 2))
        knee = tuple(rng.uniform(0.0, 0.4, 2))
    as_pair = lambda values: (float(values[0]), float(values[1]))  # noqa: E731
    return BodyPose(
        yaw=float(yaw),
        arm_swing=as_pair(arm_swing),
        arm_abduction=as_pair(arm_abduction),
        elbow=as_pair(elbow),
        leg_swing=as_pair(leg_swing),
        leg_abduction=as_pair(leg_abduction),
        knee=as_pair(knee),
        height_fraction=float(rng.uniform(0.78, 0.93)),
        shift=as_pair(rng.uniform(0, 1, 2)),
    )


def view_name(yaw: float) -> str:
    """The nearest of the eight view labels for a yaw in radians."""
    return VIEW_NAMES[round(math.degrees(yaw) / 45) % 8]


def _direction(swing: float, abduction: float, side: float) -> np.ndarray:
    """Unit limb direction: hanging down, rotated forward by swing, then sideways by abduction."""
    y, z = math.cos(swing), math.sin(swing)
    return np.array([side * y * math.sin(abduction), y * math.cos(abduction), z])


def skeleton_3d(appearance: Appearance, pose: BodyPose) -> np.ndarray:
    """The 18 keypoints in the body frame (X left, Y down, Z forward), (18, 3) in the CSV order."""
    sw, hw, r = appearance.shoulder_half_width, appearance.hip_half_width, appearance.head_radius
    joints = np.zeros((18, 3))
    joints[RSHO], joints[LSHO] = (-sw, SHOULDER_Y, 0), (sw, SHOULDER_Y, 0)
    joints[RHIP], joints[LHIP] = (-hw, HIP_Y, 0), (hw, HIP_Y, 0)
    for i, (sho, elb, wri, side) in enumerate(((RSHO, RELB, RWRI, -1.0), (LSHO, LELB, LWRI, 1.0))):
        swing, abduction = pose.arm_swing[i], pose.arm_abduction[i]
        joints[elb] = joints[sho] + UPPER_ARM * _direction(swing, abduction, side)
        joints[wri] = joints[elb] + FOREARM * _direction(swing + pose.elbow[i], abduction, side)
    for i, (hip, kne, ank, side) in enumerate(((RHIP, RKNE, RANK, -1.0), (LHIP, LKNE, LANK, 1.0))):
        swing, abduction = pose.leg_swing[i], pose.leg_abduction[i]
        joints[kne] = joints[hip] + THIGH * _direction(swing, abduction, side)
        joints[ank] = joints[kne] + SHIN * _direction(swing - pose.knee[i], abduction, side)
    head = np.array([0.0, HEAD_Y, 0.05])
    # Face points sit a little inside the head's outline, so they land on the head's pixels.
    joints[NOSE] = head + (0, 0.15 * r, 0.85 * r)
    joints[REYE], joints[LEYE] = head + (-0.35 * r, -0.12 * r, 0.75 * r), head + (0.35 * r, -0.12 * r, 0.75 * r)
    joints[REAR], joints[LEAR] = head + (-0.85 * r, 0, -0.05 * r), head + (0.85 * r, 0, -0.05 * r)
    return joints


class _Projector:
    """Yaw rotation + orthographic projection + framing: body units -> canvas pixels and depth."""

    def __init__(self, yaw: float, scale: float, offset: np.ndarray):
        self.cos, self.sin = math.cos(yaw), math.sin(yaw)
        self.scale, self.offset = scale, offset  # offset: canvas (x, y) of the body origin
        # Columns: image x and image y (both in units) and depth (+ = towards the camera).
        self.rotation = np.array([[self.cos, 0.0, -self.sin], [0.0, 1.0, 0.0], [self.sin, 0.0, self.cos]])

    def xy(self, points: np.ndarray) -> np.ndarray:
        """(..., 3) body points -> (..., 2) canvas pixel (x, y)."""
        return (points @ self.rotation[:, :2]) * self.scale + self.offset

    def depth(self, points: np.ndarray) -> np.ndarray:
        return points @ self.rotation[:, 2]

    def facing(self, normal: tuple[float, float, float]) -> float:
        """Cosine between a body-frame normal and the direction to the camera."""
        return float(self.depth(np.asarray(normal, dtype=float)))


def _shade(rgb: tuple[int, int, int], factor: float) -> tuple[int, int, int]:
    return tuple(int(min(255, c * factor)) for c in rgb)  # type: ignore[return-value]


def _logo_outline(shape: str, size: float) -> list[np.ndarray]:
    """Polygons (each (K, 2) in the shirt-front plane, units, centred on 0) of a logo."""
    if shape == "circle":
        t = np.linspace(0, 2 * math.pi, 16, endpoint=False)
        return [size * np.stack([np.cos(t), np.sin(t)], 1)]
    if shape == "diamond":
        return [size * np.array([[0, -1.2], [1, 0], [0, 1.2], [-1, 0]])]
    if shape == "star":
        t = np.linspace(0, 2 * math.pi, 10, endpoint=False) - math.pi / 2
        radius = np.where(np.arange(10) % 2 == 0, 1.2, 0.5)
        return [size * np.stack([radius * np.cos(t), radius * np.sin(t)], 1)]
    if shape == "bands":
        band = np.array([[-2.2, -0.3], [2.2, -0.3], [2.2, 0.3], [-2.2, 0.3]])
        return [size * (band + (0, -0.8)), size * (band + (0, 0.8))]
    if shape == "triangle":
        return [size * np.array([[0, -1.1], [1.1, 0.9], [-1.1, 0.9]])]
    return [size * np.array([[-0.3, -1.1], [0.3, -1.1], [0.3, 1.1], [-0.3, 1.1]]),
            size * np.array([[-1.1, -0.3], [1.1, -0.3], [1.1, 0.3], [-1.1, 0.3]])]


def _torso_box(appearance: Appearance) -> np.ndarray:
    """The torso as a tapered box: (2 levels, 2 sides (R, L), 2 faces (front, back), 3)."""
    top, bottom = SHOULDER_Y - 0.2, HIP_Y + 0.1
    half_widths = (appearance.shoulder_half_width + 0.05, appearance.hip_half_width + 0.2)
    box = np.zeros((2, 2, 2, 3))
    for level, (y, w) in enumerate(((top, half_widths[0]), (bottom, half_widths[1]))):
        for side, sx in enumerate((-1.0, 1.0)):
            for face, sz in enumerate((1.0, -1.0)):
                box[level, side, face] = (sx * w, y, sz * TORSO_HALF_DEPTH)
    return box


class _Painter:
    """Collects (depth, draw call) pairs and paints them far to near."""

    def __init__(self, projector: _Projector):
        self.projector = projector
        self.items: list[tuple[float, int, object]] = []

    def add(self, depth: float, draw) -> None:
        self.items.append((depth, len(self.items), draw))  # the counter keeps ties in insertion order

    def limb(self, a: np.ndarray, b: np.ndarray, width: float, colour, bias: float = 0.0) -> None:
        xy = self.projector.xy(np.stack([a, b]))
        depth = float(self.projector.depth((a + b) / 2)) + bias
        w = max(1.0, width * self.projector.scale)

        def draw(d: ImageDraw.ImageDraw) -> None:
            d.line([tuple(xy[0]), tuple(xy[1])], fill=colour, width=int(round(w)))
            for x, y in xy:  # round caps
                d.ellipse([x - w / 2, y - w / 2, x + w / 2, y + w / 2], fill=colour)

        self.add(depth, draw)

    def paint(self, draw: ImageDraw.ImageDraw) -> None:
        for _, _, call in sorted(self.items, key=lambda item: item[:2]):
            call(draw)


def _add_torso(painter: _Painter, appearance: Appearance) -> None:
    """Box faces that face the camera (a convex box needs no ordering among them), then the logo."""
    proj = painter.projector
    box = _torso_box(appearance)
    faces = {  # name: (corners in drawing order, outward normal, colour)
        "front": (box[:, :, 0].reshape(4, 3)[[0, 1, 3, 2]], (0, 0, 1), appearance.shirt_front),
        "back": (box[:, :, 1].reshape(4, 3)[[0, 1, 3, 2]], (0, 0, -1), appearance.shirt_back),
        "right": (box[:, 0].reshape(4, 3)[[0, 1, 3, 2]], (-1, 0, 0), _shade(appearance.shirt_front, 0.8)),
        "left": (box[:, 1].reshape(4, 3)[[0, 1, 3, 2]], (1, 0, 0), _shade(appearance.shirt_front, 0.8)),
    }
    polygons = []
    for corners, normal, colour in faces.values():
        facing = proj.facing(normal)
        if facing > 1e-3:
            polygons.append(([tuple(p) for p in proj.xy(corners)], _shade(colour, 0.7 + 0.3 * facing)))
    logo = []
    front_facing = proj.facing((0, 0, 1))
    if front_facing > 0.1:  # the logo exists only on the front of the shirt
        centre_y = SHOULDER_Y + 0.45 * (HIP_Y - SHOULDER_Y)
        for outline in _logo_outline(appearance.logo_shape, 0.32):
            points = np.concatenate([outline, np.full((len(outline), 1), TORSO_HALF_DEPTH)], axis=1)
            points[:, 1] += centre_y
            logo.append([tuple(p) for p in proj.xy(points)])
    logo_colour = _shade(appearance.logo_colour, 0.7 + 0.3 * front_facing)

    def draw(d: ImageDraw.ImageDraw) -> None:
        for corners, colour in polygons:
            d.polygon(corners, fill=colour)
        for polygon in logo:
            d.polygon(polygon, fill=logo_colour)

    painter.add(0.0, draw)


def _add_head(painter: _Painter, appearance: Appearance, joints: np.ndarray) -> None:
    """Hair everywhere on the head, the face (skin, eyes) only where it faces the camera."""
    proj, r = painter.projector, appearance.head_radius
    head = np.array([0.0, HEAD_Y, 0.05])
    cx, cy = proj.xy(head)
    R = r * proj.scale
    forward = proj.facing((0, 0, 1))
    face_dx = 0.35 * R * proj.sin  # the face centre slides sideways as the head turns
    eyes = [proj.xy(joints[i]) for i in (LEYE, REYE) if proj.depth(joints[i] - head) > 0.15 * r]
    ears = [proj.xy(joints[i]) for i in (LEAR, REAR) if proj.depth(joints[i] - head) > 0.3 * r]

    def draw(d: ImageDraw.ImageDraw) -> None:
        d.ellipse([cx - R, cy - 1.08 * R, cx + R, cy + R], fill=appearance.hair)
        if forward > -0.35:
            half_w = (R - abs(face_dx)) * 0.95
            fx, fy = cx + face_dx, cy + 0.2 * R
            d.ellipse([fx - half_w, fy - 0.75 * R, fx + half_w, fy + 0.78 * R], fill=appearance.skin)
        e = max(1.0, 0.13 * R)
        for x, y in eyes:
            d.ellipse([x - e, y - e, x + e, y + e], fill=(25, 20, 20))
        for x, y in ears:
            d.ellipse([x - 1.5 * e, y - 2 * e, x + 1.5 * e, y + 2 * e], fill=_shade(appearance.skin, 0.9))

    painter.add(1.0 + 0.1 * float(proj.depth(head)), draw)  # the head is drawn over the torso
    if appearance.long_hair:  # hangs behind the head: hidden by the torso from the front
        anchor = head + (0, 1.2 * r, -0.6 * r)
        ax, ay = proj.xy(anchor)

        def draw_hair(d: ImageDraw.ImageDraw) -> None:
            d.rounded_rectangle([ax - 0.95 * R, cy - 0.3 * R, ax + 0.95 * R, ay + 1.6 * R], radius=0.6 * R,
                                fill=appearance.hair)

        painter.add(float(proj.depth(anchor)) + 0.2, draw_hair)


def _add_limbs(painter: _Painter, appearance: Appearance, joints: np.ndarray) -> None:
    sleeve = _shade(appearance.shirt_front, 0.9)
    forearm = sleeve if appearance.long_sleeves else appearance.skin
    shin = appearance.skin if appearance.shorts else appearance.trousers
    neck = np.array([0.0, 0.0, 0.0])
    painter.limb(neck + (0, 0.1, 0), np.array([0.0, HEAD_Y + 0.3, 0.05]), WIDTH["neck"], appearance.skin,
                 bias=-0.5)
    for sho, elb, wri in ((RSHO, RELB, RWRI), (LSHO, LELB, LWRI)):
        painter.limb(joints[sho], joints[elb], WIDTH["upper_arm"], sleeve)
        painter.limb(joints[elb], joints[wri], WIDTH["forearm"], forearm, bias=0.01)
        hand = joints[wri] + 0.12 * (joints[wri] - joints[elb]) / FOREARM
        painter.limb(joints[wri], hand, 0.34, appearance.skin, bias=0.02)
    painter.limb(joints[RHIP], joints[LHIP], 0.8, appearance.trousers, bias=-0.46)  # the pelvis
    for hip, kne, ank in ((RHIP, RKNE, RANK), (LHIP, LKNE, LANK)):
        # Trousers go under the shirt: the legs' depth is lowered so the torso box covers their tops.
        painter.limb(joints[hip], joints[kne], WIDTH["thigh"], appearance.trousers, bias=-0.45)
        painter.limb(joints[kne], joints[ank], WIDTH["shin"], shin, bias=-0.44)
        toe = joints[ank] + (0, 0.2, 0.55)
        painter.limb(joints[ank], toe, WIDTH["foot"], appearance.shoes, bias=-0.43)


def _frame(uv: np.ndarray, head_top: float, size: tuple[int, int], pose: BodyPose) -> tuple[float, np.ndarray]:
    """Scale (canvas px per unit) and offset placing the projected body inside the canvas."""
    H, W = size[0] * SUPERSAMPLE, size[1] * SUPERSAMPLE
    margin = 0.45  # units around the joints: limb half-widths and feet
    lo = np.array([uv[:, 0].min() - margin, head_top - 0.1])
    hi = uv.max(axis=0) + margin + (0, 0.2)
    extent = hi - lo
    scale = min(pose.height_fraction * H / extent[1], 0.96 * W / extent[0])
    free = np.array([W, H]) - scale * extent
    offset = free * np.array([pose.shift[1], pose.shift[0]]) - scale * lo
    return scale, offset


def render_person(appearance: Appearance, pose: BodyPose, background: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Draw one person over a background.

    background: (H * SUPERSAMPLE, W * SUPERSAMPLE, 3) uint8. Returns the image (H, W, 3) uint8 and
    the keypoints (18, 2) float32 in (row, col) pixels of the image, -1 for missing points.
    """
    joints = skeleton_3d(appearance, pose)
    size = (background.shape[0] // SUPERSAMPLE, background.shape[1] // SUPERSAMPLE)
    unframed = _Projector(pose.yaw, 1.0, np.zeros(2))
    uv = unframed.xy(np.concatenate([joints, joints[[LANK, RANK]] + (0, 0.2, 0.55)]))
    scale, offset = _frame(uv, HEAD_Y - 1.08 * appearance.head_radius, size, pose)
    proj = _Projector(pose.yaw, scale, offset)

    painter = _Painter(proj)
    _add_torso(painter, appearance)
    _add_head(painter, appearance, joints)
    _add_limbs(painter, appearance, joints)
    canvas = Image.fromarray(background)
    painter.paint(ImageDraw.Draw(canvas))
    image = np.asarray(canvas.reduce(SUPERSAMPLE))

    # Canvas pixel centres sit at S * p + (S - 1) / 2 for image pixel p.
    xy = (proj.xy(joints) - (SUPERSAMPLE - 1) / 2) / SUPERSAMPLE
    keypoints = np.rint(xy[:, ::-1]).astype(np.float32)
    head = np.array([0.0, HEAD_Y, 0.05])
    r = appearance.head_radius
    hidden = [i for i in (NOSE, LEYE, REYE) if proj.depth(joints[i] - head) <= 0]
    hidden += [i for i in (LEAR, REAR) if proj.depth(joints[i] - head) < -0.3 * r]
    keypoints[hidden] = -1
    return image, keypoints


def sample_background(rng: np.random.Generator, size: tuple[int, int]) -> np.ndarray:
    """A random solid, gradient, striped or wall-and-floor background, (H*S, W*S, 3) uint8."""
    H, W = size[0] * SUPERSAMPLE, size[1] * SUPERSAMPLE
    c1, c2 = rng.uniform(0, 255, 3).astype(np.float32), rng.uniform(0, 255, 3).astype(np.float32)
    y = np.linspace(0, 1, H, dtype=np.float32)[:, None, None]
    x = np.linspace(0, 1, W, dtype=np.float32)[None, :, None]
    kind = rng.integers(5)
    if kind == 0:
        t = np.zeros((1, 1, 1), np.float32)
    elif kind == 1:
        t = y
    elif kind == 2:
        t = x
    elif kind == 3:
        angle, period = rng.uniform(0, math.pi), rng.uniform(0.08, 0.4)
        phase = x * np.float32(math.cos(angle) * W / H / period) + y * np.float32(math.sin(angle) / period)
        t = (phase % 1.0 < rng.uniform(0.3, 0.7)).astype(np.float32)
    else:
        t = np.minimum((y > rng.uniform(0.55, 0.85)) + 0.3 * y, 1)  # wall, then floor
    return np.broadcast_to(c1 + t * (c2 - c1), (H, W, 3)).astype(np.uint8)


def in_frame(keypoints: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Keypoints (18, 2) (y, x) with every point outside the (H, W) image marked missing (-1, -1).

    A pixel-centre coordinate is inside when 0 <= y <= H - 1 and 0 <= x <= W - 1."""
    keypoints = np.array(keypoints, dtype=np.float32)
    H, W = size
    outside = ((keypoints[:, 0] < 0) | (keypoints[:, 0] > H - 1)
               | (keypoints[:, 1] < 0) | (keypoints[:, 1] > W - 1))
    keypoints[outside] = -1
    return keypoints


def _image_rng(seed: int, identity: int, index: int) -> np.random.Generator:
    return np.random.default_rng([seed, identity, 1, index])


def identity_appearance(seed: int, identity: int) -> Appearance:
    """The appearance of one identity of the synthetic set generated with ``seed``."""
    return sample_appearance(np.random.default_rng([seed, identity, 0]))


def render_sample(seed: int, identity: int, index: int, size: tuple[int, int]) -> tuple[str, np.ndarray, np.ndarray]:
    """Image ``index`` of ``identity``: (file name, image (H, W, 3) uint8, keypoints (18, 2))."""
    rng = _image_rng(seed, identity, index)
    pose = sample_pose(rng)
    image, keypoints = render_person(identity_appearance(seed, identity), pose, sample_background(rng, size))
    keypoints = in_frame(keypoints, size)
    noise = rng.standard_normal(image.shape, dtype=np.float32) * rng.uniform(0, 6)  # sensor noise, as in real crops
    image = np.clip(image + noise, 0, 255).astype(np.uint8)
    return f"{identity:04d}_{view_name(pose.yaw)}_{index:03d}.png", image, keypoints


def parse_sample_name(name: str) -> tuple[int, str, int]:
    """(identity, view, index) of a file name ``render_sample`` gives: ``<identity>_<view>_<index>.png``
    (a path or a bare stem too)."""
    parts = Path(name).stem.split("_")
    if len(parts) != 3 or not parts[0].isdigit() or not parts[2].isdigit() or parts[1] not in VIEW_NAMES:
        raise ValueError(f"name must be a synthetic file name <identity>_<view>_<index>.png, got {name!r}")
    return int(parts[0]), parts[1], int(parts[2])


def logo_layer(seed: int, identity: int, index: int, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """What the logo adds to image ``index`` of ``identity``, to measure whether a model draws it.

    Renders the image twice without its sensor noise: as generated, and with the logo painted in
    the shirt's front colour (the same shading, so it vanishes). Returns (plain, logo): the image
    without the logo (H, W, 3) float32 in 0..255, and the logo's contribution (H, W, 3) float32,
    zero wherever the logo is not seen (another view, a limb in front of it), partial on its
    anti-aliased edge. plain + logo is the noiseless image.
    """
    rng = _image_rng(seed, identity, index)
    pose = sample_pose(rng)
    background = sample_background(rng, size)
    appearance = identity_appearance(seed, identity)
    with_logo, _ = render_person(appearance, pose, background)
    plain, _ = render_person(dataclasses.replace(appearance, logo_colour=appearance.shirt_front), pose, background)
    plain = plain.astype(np.float32)
    return plain, with_logo.astype(np.float32) - plain


def example_grid(seed: int = 0, identities: int = 6, size: tuple[int, int] = (128, 64)) -> np.ndarray:
    """Identities (rows) x the eight views (columns, VIEW_NAMES order) in one uint8 image, for docs."""
    rows = []
    for identity in range(1, identities + 1):
        appearance = identity_appearance(seed, identity)
        row = []
        for view in range(8):
            rng = _image_rng(seed, identity, view)
            pose = dataclasses.replace(sample_pose(rng), yaw=math.radians(45 * view))
            row.append(render_person(appearance, pose, sample_background(rng, size))[0])
        rows.append(np.concatenate(row, axis=1))
    return np.concatenate(rows, axis=0)
