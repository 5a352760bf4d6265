"""The ten body parts: backward affines (target pixel -> source pixel) and target-side masks.

METHOD.md, "Body-part affine warping". Part k of pair n has theta[n, k] (2, 3) in image pixels with
the msgen.ops.part_warp convention: the target pixel (x, y, 1), pixel centres at integers, samples
the source at theta[n, k] @ (x, y, 1). Its mask[n, k] (H, W) in {0, 1} says where in the target the
part lies.

- 0 torso: least-squares affine from the four torso points (Rhip, Lhip, Lsho, Rsho), which both
  poses must have; mask = the whole image, so the torso is also the background warp.
- 1 head: least-squares affine from the head points (nose, eyes, ears) present in both poses plus
  the two shoulders, which both poses must have; mask = the square of half-size 0.4 * s_target around the mean of
  the target's head points.
- 2..9 limbs: a rectangle along each bone, extended by 0.1 of the bone length past the proximal
  joint and 0.1 (upper segments) or 0.3 (lower segments) past the distal joint, half-width
  0.2 * s of its own pose; the affine maps the target rectangle's corners exactly onto the source
  rectangle's. A source without the limb lends its mirrored limb (R <-> L). The mask is the target
  rectangle, the same rectangle the affine maps (the published code extends lower segments' masks
  by 0.5 bone lengths, beyond its rectangle; here mask and affine cover one region).

s = sqrt((|Rhip - Rsho|^2 + |Lhip - Lsho|^2) / 2) is the torso size of the pose it is used on:
the target's for the target rectangles and the head mask, the source's for the source rectangles.

Conditioning (the published code only caught exactly singular fits, so noisy near-degenerate
poses gave wild transforms):
- a least-squares fit is a full affine only when the points of BOTH poses spread in every
  direction: the smaller eigenvalue of their covariance at least AFFINE_MIN_VARIANCE px^2 and
  AFFINE_MIN_RATIO of the larger one (a side view's torso is nearly a line, whose affine width
  scale would be noise); otherwise it is the least-squares similarity (rotation, uniform scale,
  translation), which needs only two distinct points in each pose;
- a limb rectangle needs a bone of at least MIN_EXTENT px and a width 0.4 * s of at least
  MIN_EXTENT px, in both poses (a degenerate source limb counts as missing);
- every part's transform must be well conditioned: the ratio of the smaller to the larger
  singular value of its linear part at least MIN_SINGULAR_RATIO. A nearly singular transform
  stretches a few source pixels over the whole part (on real DeepFashion side views the torso's,
  whose mask is the whole image, smeared streaks over the picture); such a part is unusable.
A part that cannot be estimated, is unusable, or whose mask covers no pixel centre, gets an all-zero mask and
NULL_THETA, which sends every pixel to (NULL_OFFSET, NULL_OFFSET): outside any image and any
feature map (also after msgen.pose.affines_at_stride), so its warp is zero.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from msgen.pose.keypoints import KEYPOINT_INDEX, check_keypoints, present

NUM_PARTS = 10
PART_NAMES = (
    "torso", "head", "r_upper_leg", "l_upper_leg", "r_lower_leg", "l_lower_leg",
    "r_upper_arm", "l_upper_arm", "r_forearm", "l_forearm",
)  # fmt: skip

TORSO_PART = 0  # its mask is the whole image: it doubles as the background warp


def torso_area(kp: Tensor, size: tuple[int, int]) -> Tensor:
    """The pixels inside the torso's four points (Rsho, Lsho, Lhip, Rhip): (N, 18, 2) (y, x)
    keypoints -> (N, H, W) bool, all False where a torso point is missing. The union of the four
    triangles of three torso points each: the quadrilateral when it is convex, and its hull's
    pieces when a side view crosses it over."""
    H, W = int(size[0]), int(size[1])
    xy = _xy(kp.to(torch.float64))[:, list(TORSO_POINTS)]  # (N, 4, 2) as (x, y)
    ys = torch.arange(H, dtype=torch.float64, device=kp.device)[:, None]
    xs = torch.arange(W, dtype=torch.float64, device=kp.device)[None, :]
    area = torch.zeros(kp.shape[0], H, W, dtype=torch.bool, device=kp.device)
    for corners in ((0, 1, 2), (0, 2, 3), (0, 1, 3), (1, 2, 3)):
        sides = []
        for a, b in zip(corners, corners[1:] + corners[:1]):
            pa, pb = xy[:, a, :, None, None], xy[:, b, :, None, None]
            sides.append((pb[:, 0] - pa[:, 0]) * (ys - pa[:, 1]) - (pb[:, 1] - pa[:, 1]) * (xs - pa[:, 0]))
        sides = torch.stack(sides)
        area |= (sides >= 0).all(0) | (sides <= 0).all(0)
    return area & present(kp)[:, list(TORSO_POINTS)].all(-1)[:, None, None]


def body_of(part_masks: Tensor, target_kp: Tensor) -> Tensor:
    """Where the target's body is: the head and limb masks (maximum over the part axis and, for
    (B, M, P, H, W) masks, over sources) and the area inside the torso's four points (``torso_area``
    of target_kp (B, 18, 2)) -> (B, H, W) in [0, 1]. The torso's own mask cannot say where the body
    is: it covers the whole image (it doubles as the background warp)."""
    limbs = part_masks[..., TORSO_PART + 1:, :, :].amax(dim=-3)
    if limbs.dim() == 4:
        limbs = limbs.amax(dim=1)
    torso = torso_area(target_kp, tuple(limbs.shape[-2:])).to(limbs.dtype)
    return torch.maximum(limbs, torso)


def one_part_per_pixel(part_masks: Tensor) -> Tensor:
    """Each pixel's mask kept for one part only, the most specific one that covers it: a head or
    limb part before the torso (whose mask is the whole image), and among head and limbs the one
    with the largest mask value (the lowest index on a tie). (..., P, H, W) -> (..., P, H, W), the
    same dtype, zero elsewhere.

    ``part_warp`` takes the maximum over parts channel by channel; a colour image warped that way
    may take each channel from another part, and the torso's background may beat a darker limb.
    With these masks at most one part is non-zero per pixel, so the same op copies whole pixels."""
    covered = part_masks > 0
    specific = covered.clone()
    specific[..., TORSO_PART, :, :] = False
    # Score: any specific covering part outranks the torso; among them the larger mask value wins.
    score = part_masks.to(torch.float32) + 2.0 * specific
    score = torch.where(covered, score, torch.full_like(score, -1.0))
    chosen = score.argmax(dim=-3, keepdim=True)
    keep = torch.zeros_like(covered).scatter_(-3, chosen, True)
    return torch.where(keep, part_masks, torch.zeros_like(part_masks))


_I = KEYPOINT_INDEX
TORSO_POINTS = (_I["Rhip"], _I["Lhip"], _I["Lsho"], _I["Rsho"])
HEAD_POINTS = (_I["nose"], _I["Leye"], _I["Reye"], _I["Lear"], _I["Rear"])
SHOULDERS = (_I["Rsho"], _I["Lsho"])
# Parts 2..9 as (proximal joint, distal joint); LIMB_MIRROR[i] is the other side's limb.
LIMB_JOINTS = (
    (_I["Rhip"], _I["Rkne"]), (_I["Lhip"], _I["Lkne"]), (_I["Rkne"], _I["Rank"]), (_I["Lkne"], _I["Lank"]),
    (_I["Rsho"], _I["Relb"]), (_I["Lsho"], _I["Lelb"]), (_I["Relb"], _I["Rwri"]), (_I["Lelb"], _I["Lwri"]),
)  # fmt: skip
LIMB_MIRROR = (1, 0, 3, 2, 5, 4, 7, 6)
LIMB_IS_LOWER = (False, False, True, True, False, False, True, True)

PROXIMAL_EXTENSION = 0.1
UPPER_EXTENSION = 0.1
LOWER_EXTENSION = 0.3
HALF_WIDTH = 0.2  # times s
HEAD_HALF_SIZE = 0.4  # times s

AFFINE_MIN_VARIANCE = 4.0  # px^2: a 2 px spread; integer annotations are uncertain by about a pixel
AFFINE_MIN_RATIO = 1e-2
MIN_EXTENT = 1.0  # px
MIN_SINGULAR_RATIO = 0.1
NULL_OFFSET = -1.0e4
NULL_THETA = ((0.0, 0.0, NULL_OFFSET), (0.0, 0.0, NULL_OFFSET))


class _Constants(NamedTuple):
    """The index and value tensors of the geometry on one device."""

    torso_pairs: Tensor  # (2, 2) (hip, shoulder) index pairs of the torso size
    torso: Tensor
    head: Tensor  # HEAD_POINTS then SHOULDERS
    joints: Tensor  # (8, 2) LIMB_JOINTS
    mirror: Tensor
    distal: Tensor  # (8,) float64 distal extension of the limb rectangles (affines and masks)
    null: Tensor  # (2, 3) float64 NULL_THETA


@functools.lru_cache(maxsize=8)
def _constants(device: torch.device) -> _Constants:
    # Made once per device: building them from Python lists at every call would be a blocking
    # host-to-device copy (a host sync) per call on a GPU.
    def index(values: object) -> Tensor:
        return torch.tensor(values, dtype=torch.long, device=device)

    return _Constants(
        torso_pairs=index([[_I["Rhip"], _I["Rsho"]], [_I["Lhip"], _I["Lsho"]]]),
        torso=index(TORSO_POINTS),
        head=index(HEAD_POINTS + SHOULDERS),
        joints=index(LIMB_JOINTS),
        mirror=index(LIMB_MIRROR),
        distal=torch.tensor([LOWER_EXTENSION if low else UPPER_EXTENSION for low in LIMB_IS_LOWER],
                            dtype=torch.float64, device=device),
        null=torch.tensor(NULL_THETA, dtype=torch.float64, device=device),
    )


def _xy(kp: Tensor) -> Tensor:
    """(..., 18, 2) (y, x) keypoints -> (x, y), the order of theta."""
    return kp.flip(-1)


def _torso_size(xy: Tensor, ok: Tensor) -> Tensor:
    """s per pose, (N, 18, 2) xy and (N, 18) presence -> (N,). From the one pair present when a
    shoulder-hip pair is missing, 0 when both are (which makes every limb rectangle degenerate)."""
    pairs = _constants(xy.device).torso_pairs
    both = ok[:, pairs].all(-1)  # (N, 2)
    squared = ((xy[:, pairs[:, 0]] - xy[:, pairs[:, 1]]) ** 2).sum(-1) * both
    return (squared.sum(-1) / both.sum(-1).clamp(min=1)).sqrt()


def _eigenvalues(sym: Tensor) -> tuple[Tensor, Tensor]:
    """Smaller and larger eigenvalue of symmetric (..., 2, 2) matrices."""
    trace = sym[..., 0, 0] + sym[..., 1, 1]
    det = sym[..., 0, 0] * sym[..., 1, 1] - sym[..., 0, 1] * sym[..., 1, 0]
    gap = ((trace / 2) ** 2 - det).clamp(min=0).sqrt()
    return trace / 2 - gap, trace / 2 + gap


def _spreads(cov: Tensor) -> Tensor:
    """Whether points of covariance (N, 2, 2) spread in every direction (see the module docstring)."""
    smallest, largest = _eigenvalues(cov)
    return (smallest >= AFFINE_MIN_VARIANCE) & (smallest >= AFFINE_MIN_RATIO * largest)


def singular_value_ratio(theta: Tensor) -> Tensor:
    """sigma_min / sigma_max of the linear part of affines (..., 2, 3): 1 for a similarity, near 0
    for a transform that squashes one direction (0 for a singular or non-finite one)."""
    linear = theta[..., :2]
    small, large = _eigenvalues(linear.transpose(-1, -2) @ linear)
    ratio = (small.clamp(min=0) / large.clamp(min=1e-300)).sqrt()
    return torch.where(torch.isfinite(ratio), ratio, torch.zeros_like(ratio))


def _fit(target: Tensor, source: Tensor, weight: Tensor) -> tuple[Tensor, Tensor]:
    """Least-squares backward affine (similarity when ill-conditioned) from point pairs.

    target, source (N, K, 2) xy; weight (N, K) bool selects the pairs. Returns theta (N, 2, 3),
    finite but meaningless where the returned valid (N,) is False.
    """
    w = weight.to(target.dtype)[..., None]
    count = w.sum(1)  # (N, 1)
    mean_t = (w * target).sum(1) / count.clamp(min=1)
    mean_s = (w * source).sum(1) / count.clamp(min=1)
    t = (target - mean_t[:, None]) * w
    s = (source - mean_s[:, None]) * w
    cov = t.transpose(1, 2) @ t / count[..., None].clamp(min=1)  # (N, 2, 2)
    cross = s.transpose(1, 2) @ t / count[..., None].clamp(min=1)  # sum of s t^T
    trace = cov[:, 0, 0] + cov[:, 1, 1]
    det = cov[:, 0, 0] * cov[:, 1, 1] - cov[:, 0, 1] * cov[:, 1, 0]
    source_cov = s.transpose(1, 2) @ s / count[..., None].clamp(min=1)
    source_spread = source_cov[:, 0, 0] + source_cov[:, 1, 1]
    n = count[:, 0]
    # Both poses must spread in every direction: a source torso seen from the side is nearly a
    # line, and the affine onto it squashes the target's torso into streaks.
    affine_ok = (n >= 3) & _spreads(cov) & _spreads(source_cov)
    similar_ok = (n >= 2) & (trace >= AFFINE_MIN_VARIANCE) & (source_spread >= AFFINE_MIN_VARIANCE)
    affine_ok &= similar_ok  # a source collapsed to one point is no fit either

    safe_det = torch.where(affine_ok, det, torch.ones_like(det))
    inverse = torch.stack(
        [torch.stack([cov[:, 1, 1], -cov[:, 0, 1]], -1), torch.stack([-cov[:, 1, 0], cov[:, 0, 0]], -1)], -2
    ) / safe_det[:, None, None]
    affine = cross @ inverse
    a = cross[:, 0, 0] + cross[:, 1, 1]  # sum t . s
    b = cross[:, 1, 0] - cross[:, 0, 1]  # sum t x s
    safe_trace = torch.where(similar_ok, trace, torch.ones_like(trace))
    similarity = torch.stack([torch.stack([a, -b], -1), torch.stack([b, a], -1)], -2) / safe_trace[:, None, None]
    linear = torch.where(affine_ok[:, None, None], affine, similarity)
    shift = mean_s - (linear @ mean_t[..., None])[..., 0]
    return torch.cat([linear, shift[..., None]], -1), similar_ok


def _rectangles(xy: Tensor, ok: Tensor, size: Tensor, distal: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The 8 limb rectangles of each pose: (N, 18, 2) xy, (N, 18) presence, (N,) torso size and
    (8,) distal extensions -> centre (N, 8, 2), along (N, 8, 2) (full length), half-width normal
    (N, 8, 2) and valid (N, 8)."""
    joints = _constants(xy.device).joints
    proximal, end = xy[:, joints[:, 0]], xy[:, joints[:, 1]]
    bone = end - proximal
    length = bone.norm(dim=-1)
    start = proximal - PROXIMAL_EXTENSION * bone
    stop = end + distal[:, None] * bone
    half = HALF_WIDTH * size[:, None]
    unit = bone / length.clamp(min=MIN_EXTENT)[..., None]
    normal = torch.stack([-unit[..., 1], unit[..., 0]], -1) * half[..., None]
    valid = ok[:, joints].all(-1) & (length >= MIN_EXTENT) & (2 * half >= MIN_EXTENT)
    return (start + stop) / 2, stop - start, normal, valid


def _rectangle_affine(target: tuple[Tensor, Tensor, Tensor], source: tuple[Tensor, Tensor, Tensor]) -> Tensor:
    """The affine taking each target rectangle's corners onto the source rectangle's: (..., 2, 3).

    With perpendicular target axes u_t, v_t: A = u_s u_t^T / |u_t|^2 + v_s v_t^T / |v_t|^2, and the
    centres correspond.
    """
    (c_t, u_t, v_t), (c_s, u_s, v_s) = target, source
    # Degenerate rectangles are invalid anyway; the clamps only keep their numbers finite.
    along = (u_t**2).sum(-1).clamp(min=MIN_EXTENT**2)[..., None, None]
    across = (v_t**2).sum(-1).clamp(min=MIN_EXTENT**2 / 4)[..., None, None]
    linear = u_s[..., :, None] * u_t[..., None, :] / along + v_s[..., :, None] * v_t[..., None, :] / across
    shift = c_s - (linear @ c_t[..., None])[..., 0]
    return torch.cat([linear, shift[..., None]], -1)


def _check_pair(source_kp: Tensor, target_kp: Tensor, size: tuple[int, int], values: bool) -> None:
    for name, kp in (("source_kp", source_kp), ("target_kp", target_kp)):
        if not isinstance(kp, Tensor):
            raise ValueError(f"{name} must be a torch.Tensor, got {type(kp).__name__}")
        if kp.dim() != 3 or tuple(kp.shape[1:]) != (18, 2):
            raise ValueError(f"{name} must be (N, 18, 2), got {tuple(kp.shape)}")
        if values:
            check_keypoints(kp, name=name)
    if source_kp.shape != target_kp.shape:
        raise ValueError(f"source_kp {tuple(source_kp.shape)} and target_kp {tuple(target_kp.shape)} differ in shape")
    if source_kp.device != target_kp.device:
        raise ValueError(f"source_kp is on {source_kp.device}, target_kp on {target_kp.device}")
    if len(size) != 2 or min(size) < 1:
        raise ValueError(f"size must be two positive ints (H, W), got {size}")


def body_part_affines(
    source_kp: Tensor,
    target_kp: Tensor,
    size: tuple[int, int],
    *,
    check: bool = True,
) -> tuple[Tensor, Tensor]:
    """Backward affines and target-side masks of the 10 body parts for N source/target pose pairs.

    Args:
        source_kp, target_kp: (N, 18, 2) (y, x) pixel keypoints, -1 = missing.
        size: (H, W) of the target image, the resolution of the masks.
        check: validate the keypoints' values (finite, >= 0 or missing). That reads them on the
            host: a training step on a GPU passes False for keypoints its loader checked.

    Returns:
        theta (N, 10, 2, 3): target pixel (x, y, 1) -> source pixel (x_in, y_in), NULL_THETA for a
        part that cannot be estimated; masks (N, 10, H, W) in {0, 1}, all zero for such a part.
        float64 for float64 keypoints, else float32; on the keypoints' device.
    """
    _check_pair(source_kp, target_kp, size, check)
    H, W = int(size[0]), int(size[1])
    out_dtype = torch.float64 if target_kp.dtype == torch.float64 else torch.float32
    device = target_kp.device
    const = _constants(device)
    # The geometry is a few numbers per pair: float64 keeps the fits exact at no real cost.
    src, tgt = _xy(source_kp.to(torch.float64)), _xy(target_kp.to(torch.float64))
    ok_s, ok_t = present(source_kp), present(target_kp)
    N = tgt.shape[0]
    s_s, s_t = _torso_size(src, ok_s), _torso_size(tgt, ok_t)

    theta = torch.empty(N, NUM_PARTS, 2, 3, dtype=torch.float64, device=device)
    valid = torch.empty(N, NUM_PARTS, dtype=torch.bool, device=device)
    torso = const.torso
    shared = ok_s[:, torso] & ok_t[:, torso]
    theta[:, 0], valid[:, 0] = _fit(tgt[:, torso], src[:, torso], shared)
    valid[:, 0] &= shared.all(-1)

    head = const.head
    shared = ok_s[:, head] & ok_t[:, head]
    theta[:, 1], valid[:, 1] = _fit(tgt[:, head], src[:, head], shared)
    valid[:, 1] &= shared[:, : len(HEAD_POINTS)].any(-1) & shared[:, len(HEAD_POINTS) :].all(-1)

    distal = const.distal
    *rect_t, limb_t = _rectangles(tgt, ok_t, s_t, distal)
    *rect_s, limb_s = _rectangles(src, ok_s, s_s, distal)
    mirror = const.mirror
    use_mirror = ~limb_s & limb_s[:, mirror]
    rect_s = [torch.where(use_mirror[..., None], r[:, mirror], r) for r in rect_s]
    theta[:, 2:] = _rectangle_affine(tuple(rect_t), tuple(rect_s))
    valid[:, 2:] = limb_t & (limb_s | use_mirror)

    head_rows, head_cols = _head_square(tgt, ok_t, s_t, H, W)
    centre, along, normal = rect_t  # the masks are the target rectangles the affines map
    first, last = _rectangle_rows(centre, along, normal, H, W)  # (N, 8, H)

    valid[:, 1] &= head_rows.any(-1) & head_cols.any(-1)
    valid[:, 2:] &= (first <= last).any(-1)
    valid &= torch.isfinite(theta).flatten(2).all(-1)
    valid &= singular_value_ratio(theta) >= MIN_SINGULAR_RATIO
    theta = torch.where(valid[..., None, None], theta, const.null)

    masks = torch.empty(N, NUM_PARTS, H, W, dtype=out_dtype, device=device)
    masks[:, 0] = valid[:, 0, None, None]
    masks[:, 1] = head_rows[:, :, None] & head_cols[:, None, :] & valid[:, 1, None, None]
    cols = torch.arange(W, dtype=torch.float32, device=device)
    first = torch.where(valid[:, 2:, None], first, float(W)).to(torch.float32)[..., None]  # invalid: empty
    masks[:, 2:] = (cols >= first) & (cols <= last.to(torch.float32)[..., None])
    return theta.to(out_dtype), masks


def _head_square(tgt: Tensor, ok_t: Tensor, s_t: Tensor, H: int, W: int) -> tuple[Tensor, Tensor]:
    """The head mask as the rows (N, H) and columns (N, W) its square covers; none without head points."""
    head = _constants(tgt.device).head[: len(HEAD_POINTS)]
    seen = ok_t[:, head]
    centre = (tgt[:, head] * seen[..., None]).sum(1) / seen.sum(1).clamp(min=1)[:, None]
    half = (HEAD_HALF_SIZE * s_t)[:, None]
    rows = torch.arange(H, dtype=tgt.dtype, device=tgt.device)
    cols = torch.arange(W, dtype=tgt.dtype, device=tgt.device)
    any_seen = seen.any(-1, keepdim=True)
    return ((rows - centre[:, 1:]).abs() <= half) & any_seen, ((cols - centre[:, :1]).abs() <= half) & any_seen


def _rectangle_rows(centre: Tensor, along: Tensor, normal: Tensor, H: int, W: int) -> tuple[Tensor, Tensor]:
    """Rasterise rectangles row by row: the first and last column (..., H) whose pixel centre lies
    inside (first > last for an empty row), from centre (..., 2), full-length axis along (..., 2)
    and half-width vector normal (..., 2). A convex region meets each row in one interval, so the
    (..., H, W) mask is then two comparisons."""
    dy = torch.arange(H, dtype=centre.dtype, device=centre.device) - centre[..., 1:]  # (..., H)
    low = torch.full_like(dy, -float(W))
    high = torch.full_like(dy, 2.0 * W)
    for axis, reach in ((along, along.norm(dim=-1) / 2), (normal, normal.norm(dim=-1))):
        unit = axis / axis.norm(dim=-1, keepdim=True).clamp(min=1e-12)
        ux, uy, reach = unit[..., :1], unit[..., 1:], reach[..., None]
        # |ux dx + uy dy| <= reach, solved for dx; an axis parallel to the rows only selects rows.
        steep = ux.abs() > 1e-9
        safe_ux = torch.where(steep, ux, torch.ones_like(ux))
        a, b = (-reach - uy * dy) / safe_ux, (reach - uy * dy) / safe_ux
        row_ok = (uy * dy).abs() <= reach
        low = torch.maximum(low, torch.where(steep, torch.minimum(a, b), torch.where(row_ok, -float(W), 2.0 * W)))
        high = torch.minimum(high, torch.where(steep, torch.maximum(a, b), torch.where(row_ok, 2.0 * W, -float(W))))
    first = (centre[..., :1] + low).ceil().clamp(0, W)
    last = (centre[..., :1] + high).floor().clamp(-1, W - 1)
    return first, last


def part_masks_at(masks: Tensor, size: tuple[int, int]) -> Tensor:
    """Resize part masks (N, P, H, W) to a feature resolution size = (h, w): (N, P, h, w).

    Average pooling when (h, w) divides (H, W), so a feature pixel gets the fraction of its image
    footprint the part covers; bilinear interpolation otherwise. Values stay in [0, 1].
    """
    if masks.dim() != 4:
        raise ValueError(f"masks must be (N, P, H, W), got {tuple(masks.shape)}")
    h, w = int(size[0]), int(size[1])
    if h < 1 or w < 1:
        raise ValueError(f"size must be two positive ints (h, w), got {size}")
    H, W = masks.shape[-2:]
    if (h, w) == (H, W):
        return masks
    if H % h == 0 and W % w == 0:
        return F.avg_pool2d(masks, kernel_size=(H // h, W // w))
    return F.interpolate(masks, size=(h, w), mode="bilinear", align_corners=False).clamp(0, 1)
