"""Finding the person in a photo: 18 OpenPose keypoints from an image (docs/POSE.md).

A ``Detector`` turns a uint8 RGB image (H, W, 3) into a list of poses, one (18, 2) float32 (y, x)
array per person found, in the image's pixels, -1 = missing (msgen.pose.keypoints). The one that
ships is ``MediaPipeDetector`` (the optional ``pose`` extra, ``pip install 'msgen[pose]'``:
mediapipe 0.10.21, whose wheel bundles the BlazePose models, so it runs offline). Tests and other
estimators plug in through the same interface: anything with a ``detect(image)`` method.

``detect_person`` is what generation uses: exactly one person with the four torso points, or a
``UsageError`` that names the file and says what is wrong.

Landmark mapping. MediaPipe's 33 landmarks are named from the person's point of view, and so are
the datasets' shoulders, elbows, wrists, hips, knees and ankles. The datasets' head points are
not: their index 14 ("Leye") and 16 ("Lear") are OpenPose's REye and REar, the person's right
(checked on the 32,668 Market annotations: in the 1,483 frontal poses, index 14 lies on the Rsho
side of index 15 in 99.9 % and index 16 on the Rsho side of index 17 in all). So "Leye" takes
MediaPipe's right eye (5), "Reye" its left eye (2), "Lear" its right ear (8), "Rear" its left
ear (7). The neck is the shoulders' midpoint, present only when both are.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
from PIL import Image

from msgen.errors import UsageError
from msgen.pose.keypoints import KEYPOINT_INDEX, KEYPOINT_NAMES, MISSING, NUM_KEYPOINTS, TORSO, present

# MediaPipe Pose landmark index for each OpenPose point (None: the neck, from the two shoulders).
MEDIAPIPE_INDEX = {
    "nose": 0, "neck": None, "Rsho": 12, "Relb": 14, "Rwri": 16, "Lsho": 11, "Lelb": 13, "Lwri": 15,
    "Rhip": 24, "Rkne": 26, "Rank": 28, "Lhip": 23, "Lkne": 25, "Lank": 27, "Leye": 5, "Reye": 2,
    "Lear": 8, "Rear": 7,
}  # fmt: skip
MIN_VISIBILITY = 0.5
# OpenPose marks no nose or eyes on a person seen from behind; MediaPipe returns them anyway (with
# visibility near 1). Three cues, each catching back views the others miss; measured on market-real
# (100 back views by the annotations, i.e. no nose and no eyes; 259 others; docs/POSE.md), with the
# constants picked by cross-validation over persons. Held out, the three together catch 74 back
# views with 20 false fires; the depth cue alone 50 with 11.
# 1. Depth (facing_away): MediaPipe's 3D world landmarks (metres, z away from the camera) put the
#    nose more than FACING_AWAY_DEPTH behind the ears' midpoint (every fold chose 0.10 m). Only this
#    cue says which way the body faces, so only it also swaps the sides (openpose_conventions).
FACING_AWAY_DEPTH = 0.10
# 2. Skin (face_skin): on a back view MediaPipe's face points land on hair. Less than FACE_SKIN of
#    the pixels in squares around its nose, eyes and mouth corners (FACE_LANDMARKS; half-side
#    FACE_PATCH of the distance between the ears, at least 1 px: 3x3 px on most 64x128 crops) are
#    skin-coloured: the YCbCr box of Chai and Ngan (1999; SKIN_CR, SKIN_CB), on pixels brighter than
#    SKIN_MIN_LUMA (the chroma of dark pixels is noise). FACE_SKIN = 0.4 was the most frequent
#    choice of the folds (the share's median: 0.37 on back views, 1.0 on others). It says the face
#    is not seen, not which way the body faces (it also fires on side views with the head turned):
#    swapping the sides by it too put 28 fewer body points within 5 px of the annotations. A
#    greyscale photo (no pixel's channels more than GREY_SPREAD apart) has no skin colour to see,
#    so there the cue is not used.
# 3. Upside down (upside_down): MediaPipe fitted the skeleton head down, its shoulders below its hips
#    in the image (12 crops, 11 of them back views; no constant). Such a pose is wrong throughout
#    (shoulders 30-75 px off), so dropping its face only keeps a face off the feet.
FACE_LANDMARKS = (0, 2, 5, 9, 10)
FACE_PATCH = 0.15
SKIN_CR = (133, 173)
SKIN_CB = (77, 127)
SKIN_MIN_LUMA = 40
FACE_SKIN = 0.4
GREY_SPREAD = 16
FACE = ("nose", "Leye", "Reye")
# With the legs cut off by the image's bottom edge, MediaPipe squeezes the torso: the hips come out
# above OpenPose's, the more so the less thigh is seen. Measured on market-real crops cut between the
# annotated hips and knees (a quarter, half, three quarters of the way and at the knees; 884 cut
# shots with a person found, docs/POSE.md): hips a median 6.0 px (0.19 torso) above OpenPose's, and
# knees guessed just inside the edge. The legs count as cut when the hips lie within CUT_GAP torso
# lengths (shoulders' midpoint to hips' midpoint) of the bottom edge and no knee lies more than
# KNEE_EDGE torso lengths above it (the uncut crops' knees lie 0.6 or more above it in 95 %); then the
# knees and ankles are dropped (guesses) and the hips lowered by HIP_DROP torso lengths: signed median
# -6.0 -> -2.5 px on the cut shots, fired on 22 of 357 uncut crops (their median unchanged).
CUT_GAP = 1.2
KNEE_EDGE = 0.5
HIP_DROP = 0.13
SIDE_PAIRS = (("Rsho", "Lsho"), ("Relb", "Lelb"), ("Rwri", "Lwri"), ("Rhip", "Lhip"), ("Rkne", "Lkne"), ("Rank", "Lank"))
# MediaPipe's person detector misses most tight re-identification crops (a person filling the
# image). Measured on the 386 market-real crops (python -m msgen.pose.annotate --evaluate, see
# docs/POSE.md): found in 196 as they are, 318 padded by 0.5 of each side's length on every side,
# 342 by 1.0, 293 by 1.5; enlarging the images (MIN_SIDE 256) changed nothing, so it is off. PADS
# are tried in order until a person is found (0: the photo as it is, for wide photos with room
# around the person). Photos are first shrunk to MAX_SIDE px on the longer side: the detector
# works at 224x224 anyway, and a padded 12-megapixel photo would take a gigabyte.
PADS = (1.0, 0.5, 0.0)
MIN_SIDE = 0
MAX_SIDE = 640
PAD_COLOUR = (127, 127, 127)
# EXIF orientation tag and the transpose that shows each orientation upright (as PIL.ImageOps.exif_transpose).
EXIF_ORIENTATION = 0x0112
_EXIF_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}  # fmt: skip
# A second person's torso points must lie this fraction of the image's side inside its edges.
EDGE_MARGIN = 0.1


@runtime_checkable
class Detector(Protocol):
    """Anything that finds people: ``detect(image uint8 (H, W, 3)) -> [(18, 2) (y, x), ...]``."""

    def detect(self, image: np.ndarray) -> list[np.ndarray]: ...


def landmarks_to_keypoints(
    landmarks: np.ndarray, size: tuple[int, int], min_visibility: float = MIN_VISIBILITY
) -> np.ndarray:
    """Map MediaPipe landmarks (33, 3) as normalised (x, y, visibility) to (18, 2) (y, x) pixels.

    Normalised coordinates span the image's edges, so pixel centre i sits at (i + 0.5) / size;
    keypoints are rounded to whole pixels as the annotation CSV stores them. A landmark less
    visible than ``min_visibility`` or outside the (H, W) image is missing.
    """
    landmarks = np.asarray(landmarks, dtype=np.float64)
    if landmarks.shape != (33, 3):
        raise ValueError(f"landmarks must be (33, 3) as (x, y, visibility), got {landmarks.shape}")
    H, W = size
    kp = np.full((NUM_KEYPOINTS, 2), float(MISSING), dtype=np.float32)
    for i, name in enumerate(KEYPOINT_NAMES):
        index = MEDIAPIPE_INDEX[name]
        if index is None:
            continue
        x, y, visibility = landmarks[index]
        row, col = round(y * H - 0.5), round(x * W - 0.5)
        if visibility >= min_visibility and 0 <= row < H and 0 <= col < W:
            kp[i] = (row, col)
    neck, shoulders = KEYPOINT_INDEX["neck"], [KEYPOINT_INDEX["Rsho"], KEYPOINT_INDEX["Lsho"]]
    if (kp[shoulders] >= 0).all():
        kp[neck] = np.rint(kp[shoulders].mean(0))
    return kp


def drop_folded_legs(kp: np.ndarray) -> np.ndarray:
    """Mark missing a knee that is not below its hip (and its ankle), and an ankle not below its
    knee (or hip). kp (18, 2) (y, x); returns a copy.

    MediaPipe guesses legs that are out of the picture: on an upper-body photo it returns knees
    above the hips. The datasets' people stand, and framing sizes the person by the legs.
    """
    kp = kp.copy()
    for side in "RL":
        hip, knee, ankle = (KEYPOINT_INDEX[side + joint] for joint in ("hip", "kne", "ank"))
        ok = present(kp)
        if ok[knee] and ok[hip] and kp[knee, 0] <= kp[hip, 0]:
            kp[[knee, ankle]] = MISSING  # a folded knee's ankle is a guess as well
            continue
        upper = knee if ok[knee] else hip
        if ok[ankle] and ok[upper] and kp[ankle, 0] <= kp[upper, 0]:
            kp[ankle] = MISSING
    return kp


def facing_away(world: np.ndarray, depth: float = FACING_AWAY_DEPTH) -> bool:
    """Whether MediaPipe's world landmarks (33, >= 3) as (x, y, z) metres, z growing away from the
    camera, show the person from behind: the nose more than ``depth`` behind the ears' midpoint."""
    world = np.asarray(world, dtype=np.float64)
    return bool(world[0, 2] - world[[7, 8], 2].mean() > depth)  # MediaPipe's nose 0, ears 7 and 8


def upside_down(landmarks: np.ndarray) -> bool:
    """Whether MediaPipe's image landmarks (33, >= 2) as image-normalised (x, y), y down, put the
    shoulders' midpoint below the hips' midpoint."""
    landmarks = np.asarray(landmarks, dtype=np.float64)
    return bool(landmarks[[11, 12], 1].mean() > landmarks[[23, 24], 1].mean())  # shoulders 11, 12; hips 23, 24


def face_skin(image: np.ndarray, landmarks: np.ndarray) -> float | None:
    """The share of skin-coloured pixels around MediaPipe's nose, eyes and mouth corners (the skin
    cue above FACE_LANDMARKS) in a uint8 RGB image (H, W, 3), given its landmarks (33, >= 2) as
    image-normalised (x, y); None when those squares lie outside the image or the image is
    greyscale (see GREY_SPREAD)."""
    image, landmarks = np.asarray(image), np.asarray(landmarks, dtype=np.float64)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(f"image must be uint8 (H, W, 3) RGB, got {image.dtype} {image.shape}")
    if landmarks.ndim != 2 or landmarks.shape[0] != 33 or landmarks.shape[1] < 2:
        raise ValueError(f"landmarks must be (33, >= 2) as image-normalised (x, y), got {landmarks.shape}")
    H, W = image.shape[:2]
    step = max(1, min(H, W) // 64)  # every pixel of a small crop; a sample of a large photo
    sample = image[::step, ::step].astype(np.int16)
    if (sample.max(-1) - sample.min(-1)).max() <= GREY_SPREAD:
        return None
    xy = landmarks[:, :2] * (W, H)
    half = max(1, round(FACE_PATCH * float(np.linalg.norm(xy[7] - xy[8]))))  # MediaPipe's ears: 7, 8
    squares = []
    for index in FACE_LANDMARKS:
        col, row = round(xy[index, 0] - 0.5), round(xy[index, 1] - 0.5)
        square = image[max(0, row - half):max(0, row + half + 1), max(0, col - half):max(0, col + half + 1)]
        squares.append(square.reshape(-1, 3))
    pixels = np.concatenate(squares).astype(np.float64)
    if not len(pixels):
        return None
    r, g, b = pixels.T  # YCbCr as JPEG defines it (ITU-R BT.601, full range)
    luma = 0.299 * r + 0.587 * g + 0.114 * b
    cr = 128 + 0.5 * r - 0.418688 * g - 0.081312 * b
    cb = 128 - 0.168736 * r - 0.331264 * g + 0.5 * b
    skin = (SKIN_CR[0] <= cr) & (cr <= SKIN_CR[1]) & (SKIN_CB[0] <= cb) & (cb <= SKIN_CB[1]) & (luma > SKIN_MIN_LUMA)
    return float(skin.mean())


def openpose_conventions(kp: np.ndarray, away: bool, face_unseen: bool = False) -> np.ndarray:
    """Keypoints (18, 2) (y, x) as OpenPose marks them, given whether the person faces away
    (facing_away) and whether the face is not seen (face_skin below FACE_SKIN, or upside_down); a copy.

    Facing away: no nose and no eyes (OpenPose marks none; the ears it often marks, so they stay),
    and the person's right side on the image's right: when the shoulders lie the other way round,
    every body pair (shoulders to ankles) changes sides. Face unseen: no nose and no eyes, the sides
    as they are. Otherwise unchanged (MediaPipe's sides; a side view's shoulders overlap, so their
    order says little).
    """
    kp = kp.copy()
    if away or face_unseen:
        kp[[KEYPOINT_INDEX[n] for n in FACE]] = MISSING
    if not away:
        return kp
    right, left = KEYPOINT_INDEX["Rsho"], KEYPOINT_INDEX["Lsho"]
    if present(kp)[[right, left]].all() and kp[right, 1] < kp[left, 1]:
        for a, b in SIDE_PAIRS:
            i, j = KEYPOINT_INDEX[a], KEYPOINT_INDEX[b]
            kp[[i, j]] = kp[[j, i]]
    return kp


def lower_cut_hips(kp: np.ndarray, height: int) -> np.ndarray:
    """Keypoints (18, 2) (y, x) of an image ``height`` px high with the hips where OpenPose puts
    them when the legs are cut off by the bottom edge (see CUT_GAP); a copy."""
    kp = kp.copy()
    ok = present(kp)
    shoulders, hips = [KEYPOINT_INDEX["Rsho"], KEYPOINT_INDEX["Lsho"]], [KEYPOINT_INDEX["Rhip"], KEYPOINT_INDEX["Lhip"]]
    if not ok[shoulders + hips].all():
        return kp
    hip_y = kp[hips, 0].mean()
    torso = hip_y - kp[shoulders, 0].mean()
    if torso <= 0 or (height - 1 - hip_y) >= CUT_GAP * torso:
        return kp
    knees = [KEYPOINT_INDEX["Rkne"], KEYPOINT_INDEX["Lkne"]]
    knee_rows = kp[knees, 0][ok[knees]]
    if len(knee_rows) and (height - 1 - knee_rows.max()) > KNEE_EDGE * torso:
        return kp
    kp[[KEYPOINT_INDEX[n] for n in ("Rkne", "Lkne", "Rank", "Lank")]] = MISSING
    kp[hips, 0] = np.minimum(np.rint(kp[hips, 0] + HIP_DROP * torso), height - 1)
    return kp


def pad_for_detector(
    image: np.ndarray, pad: float, min_side: int = MIN_SIDE, max_side: int = MAX_SIDE
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Resize an RGB image (enlarged to ``min_side`` px on the shorter side, 0 = never; shrunk to
    ``max_side`` on the longer) and pad it by ``pad`` of each side's length on every side. Returns the
    uint8 canvas (H', W', 3) and (gain, offset), both (2,) as (x, y), with
    image-normalised = canvas-normalised * gain - offset."""
    H, W = image.shape[:2]
    factor = max(1.0, min_side / min(H, W)) if min_side else 1.0
    factor = min(factor, max_side / max(H, W))
    W2, H2 = max(1, round(W * factor)), max(1, round(H * factor))
    pad_x, pad_y = round(pad * W2), round(pad * H2)
    canvas = Image.new("RGB", (W2 + 2 * pad_x, H2 + 2 * pad_y), PAD_COLOUR)
    resized = Image.fromarray(image)
    if (W2, H2) != (W, H):
        resized = resized.resize((W2, H2), Image.BICUBIC if factor > 1 else Image.LANCZOS)
    canvas.paste(resized, (pad_x, pad_y))
    gain = np.array([canvas.width / W2, canvas.height / H2])
    return np.asarray(canvas), gain, np.array([pad_x / W2, pad_y / H2])


def _torso_height(kp: np.ndarray) -> float:
    """Rows from the shoulders' midpoint down to the hips' midpoint (negative: hips above)."""
    shoulders = kp[[KEYPOINT_INDEX["Rsho"], KEYPOINT_INDEX["Lsho"]], 0].mean()
    return float(kp[[KEYPOINT_INDEX["Rhip"], KEYPOINT_INDEX["Lhip"]], 0].mean() - shoulders)


class MediaPipeDetector:
    """MediaPipe Pose (BlazePose, the model bundled in mediapipe 0.10.21's wheel) as a Detector.

    MediaPipe's pose solution finds one person. With ``look_for_others`` (generation's default),
    the found person's box is covered with grey and the image searched again: a second person with
    all four torso points, upright, its torso outside that box and clear of the image's edges, means
    the photo shows several people (measured in docs/POSE.md). Use as a context manager or ``close()``.
    """

    def __init__(self, min_visibility: float = MIN_VISIBILITY, pads: Sequence[float] = PADS, min_side: int = MIN_SIDE,
                 max_side: int = MAX_SIDE, look_for_others: bool = True):  # fmt: skip
        try:
            from mediapipe.python.solutions import pose
        except ImportError:
            raise UsageError(
                "detecting keypoints needs mediapipe, an optional dependency: pip install 'msgen[pose]' "
                "(or give keypoints in an annotation CSV: python -m msgen.pose.annotate)"
            ) from None
        self.min_visibility, self.pads, self.look_for_others = min_visibility, tuple(pads), look_for_others
        self.min_side, self.max_side = min_side, max_side
        self._model = pose.Pose(static_image_mode=True, model_complexity=1, enable_segmentation=False)

    def _one(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        """The most prominent person: ((18, 2) keypoints, (33, 3) landmarks in image-normalised x, y)."""
        for pad in self.pads:
            canvas, gain, offset = pad_for_detector(image, pad, self.min_side, self.max_side)
            result = self._model.process(canvas)
            found = result.pose_landmarks
            if found is not None:
                break
        else:
            return None
        landmarks = np.array([(p.x, p.y, p.visibility) for p in found.landmark])
        landmarks[:, :2] = landmarks[:, :2] * gain - offset
        world = np.array([(p.x, p.y, p.z) for p in result.pose_world_landmarks.landmark])
        kp = drop_folded_legs(landmarks_to_keypoints(landmarks, image.shape[:2], self.min_visibility))
        skin = face_skin(image, landmarks)
        face_unseen = (skin is not None and skin < FACE_SKIN) or upside_down(landmarks)
        kp = openpose_conventions(kp, facing_away(world), face_unseen)
        kp = lower_cut_hips(kp, image.shape[0])
        return kp, landmarks

    def detect(self, image: np.ndarray) -> list[np.ndarray]:
        """Poses found in a uint8 (H, W, 3) RGB image: a list of (18, 2) (y, x), at most two."""
        first = self._one(image)
        if first is None:
            return []
        people = [first[0]]
        if self.look_for_others and present(first[0])[[KEYPOINT_INDEX[n] for n in TORSO]].all():
            H, W = image.shape[:2]
            # The person's box from all 33 landmarks (the less visible ones too, or legs judged
            # unsure stay and are found again), widened by a tenth: hands and hair lie past them.
            (x0, y0), (x1, y1) = np.clip(first[1][:, :2], 0, 1).min(0), np.clip(first[1][:, :2], 0, 1).max(0)
            dx, dy = 0.1 * (x1 - x0), 0.1 * (y1 - y0)
            left, right = max(0, int((x0 - dx) * W)), min(W, int(np.ceil((x1 + dx) * W)))
            top, bottom = max(0, int((y0 - dy) * H)), min(H, int(np.ceil((y1 + dy) * H)))
            covered = image.copy()
            covered[top:bottom, left:right] = PAD_COLOUR
            second = self._one(covered)
            torso = second[0][[KEYPOINT_INDEX[n] for n in TORSO]] if second is not None else None
            if torso is not None and (torso >= 0).all():
                # Another person only if its torso lies outside the first's box (the detector also
                # "finds" degenerate poses in the grey box or the first person's remains) and clear
                # of the image's edges (a passer-by cut by the edge of a crop is not a second subject).
                y, x = torso.mean(0)
                margin_y, margin_x = EDGE_MARGIN * H, EDGE_MARGIN * W
                clear = (torso[:, 0] >= margin_y).all() and (torso[:, 0] <= H - 1 - margin_y).all() and (
                    (torso[:, 1] >= margin_x).all() and (torso[:, 1] <= W - 1 - margin_x).all()
                )
                # And upright, at least half as tall in the torso as the first: the search in the
                # covered image also returns upside-down ghosts (hips above shoulders).
                upright = _torso_height(second[0]) >= 0.5 * _torso_height(first[0])
                if clear and upright and not (top <= y < bottom and left <= x < right):
                    people.append(second[0])
        return people

    def close(self) -> None:
        self._model.close()

    def __enter__(self) -> MediaPipeDetector:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_DEFAULT: MediaPipeDetector | None = None


def default_detector() -> Detector:
    """The shared MediaPipeDetector (built on first use; UsageError when mediapipe is absent)."""
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = MediaPipeDetector()
    return _DEFAULT


def read_photo(path: str | Path, name: str) -> tuple[np.ndarray, np.ndarray | None]:
    """A photo as it is meant to be seen: uint8 (H', W', 3) RGB with its EXIF orientation applied
    (phones store portraits sideways and say so in a tag), and the map back to the stored pixels:
    (H', W', 2) int (row, column) of the stored image for each shown pixel, or None when the photo
    is stored upright."""
    return _open(path, name, upright=True)


def _open(path: str | Path, name: str, upright: bool) -> tuple[np.ndarray, np.ndarray | None]:
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"{name}: image not found: {path}")
    try:
        with Image.open(path) as file:
            rgb = file.convert("RGB")
            orientation = file.getexif().get(EXIF_ORIENTATION, 1) if upright else 1
    except (OSError, ValueError, SyntaxError) as error:
        raise UsageError(f"{name}: cannot read image {path}: {error}") from None
    method = _EXIF_TRANSPOSE.get(orientation)
    if method is None:
        return np.asarray(rgb).copy(), None
    H, W = rgb.height, rgb.width
    # The same transpose applied to an image of flat pixel indices gives the way back.
    index = Image.fromarray(np.arange(H * W, dtype=np.int32).reshape(H, W), mode="I").transpose(method)
    flat = np.asarray(index)
    return np.asarray(rgb.transpose(method)).copy(), np.stack([flat // W, flat % W], axis=-1)


def to_stored(kp: np.ndarray, back: np.ndarray | None) -> np.ndarray:
    """Keypoints (18, 2) of an upright photo (read_photo) in its stored pixels; -1 stays -1."""
    if back is None:
        return kp
    out = np.full_like(kp, float(MISSING))
    ok = present(kp)
    rows = np.clip(np.rint(kp[ok, 0]).astype(int), 0, back.shape[0] - 1)
    cols = np.clip(np.rint(kp[ok, 1]).astype(int), 0, back.shape[1] - 1)
    out[ok] = back[rows, cols]
    return out


def detect_person(
    image: np.ndarray | str | Path, name: str = "image", detector: Detector | None = None
) -> np.ndarray:
    """The keypoints (18, 2) (y, x) of the one person in an image (a path, read upright as
    read_photo does, or uint8 (H, W, 3)), in the pixels of the image as detected.

    ``name`` is what error messages call the image (e.g. "--sources a.jpg"). Raises UsageError when
    no person is found, when several are, or when the person lacks a torso point (Rsho, Lsho,
    Rhip, Lhip: the body-part warp needs all four).
    """
    pixels = read_photo(image, name)[0] if isinstance(image, (str, Path)) else np.asarray(image)
    if pixels.dtype != np.uint8 or pixels.ndim != 3 or pixels.shape[-1] != 3:
        raise UsageError(f"{name} must be uint8 (H, W, 3) RGB, got {pixels.dtype} {pixels.shape}")
    if detector is None:
        try:
            detector = default_detector()
        except UsageError as error:
            raise UsageError(f"{name}: no keypoints given for it, and {error}") from None
    people = detector.detect(pixels)
    if not people:
        raise UsageError(f"{name}: no person found in the image (a photo of one person, head to at least the hips, works best)")
    if len(people) > 1:
        raise UsageError(f"{name}: {len(people)} people found; crop the photo to the one person to use")
    kp = np.asarray(people[0], dtype=np.float32)
    lacking = [n for n in TORSO if not present(kp)[KEYPOINT_INDEX[n]]]
    if lacking:
        raise UsageError(
            f"{name}: the person found lacks the torso point(s) {', '.join(lacking)}; the body-part warp needs "
            f"both shoulders and both hips visible"
        )
    return kp
