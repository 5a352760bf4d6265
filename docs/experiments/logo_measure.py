"""The logo study's measure (docs/RESULTS.md, "Does the model draw the logo?"): how much of a
synthetic target's logo an image draws, and which tuples can show it.

Imported by logo_transfer.py and the shipped-model test (tests/test_shipped_model.py) as the
top-level module ``logo_measure`` (the scripts run from this folder; pytest puts it on its path,
pyproject.toml). The logo layer itself is rendered by ``msgen.data.synthetic.logo_layer``, which
must replay the renderer's random draws exactly and so lives beside it.
"""

from __future__ import annotations

import numpy as np
from skimage.morphology import dilation

from msgen.data.synthetic import logo_layer, parse_sample_name

LOGO_RING = 2  # pixels of shirt around the logo over which logo_contrast fits the shirt's colour


def logo_area(logo: np.ndarray) -> float:
    """The area in pixels of a logo layer (H, W, 3) (``logo_layer``), its anti-aliased edge
    counted by the fraction it covers; 0 when the logo is not seen."""
    magnitude = np.linalg.norm(logo, axis=-1)
    return float(magnitude.sum() / magnitude.max()) if magnitude.max() > 0 else 0.0


def logo_contrast(image: np.ndarray, plain: np.ndarray, logo: np.ndarray) -> float:
    """How much of the logo an image draws: the least-squares a of image - plain = a * logo + c
    over the logo's pixels and a ring of LOGO_RING pixels around them, c a constant colour (so a
    shirt drawn a little too dark or light is not taken for a logo). image, plain, logo: (H, W, 3)
    in 0..255, plain and logo from ``logo_layer`` (logo not all zero). 1: the logo as rendered;
    0: the plain shirt; negative: the opposite of the logo's contrast."""
    seen = np.abs(logo).sum(-1) > 0
    if not seen.any():
        raise ValueError("logo is all zero: the logo is not seen in this image")
    region = dilation(seen, np.ones((2 * LOGO_RING + 1,) * 2, dtype=bool))
    r, d = (np.asarray(image, np.float64) - plain)[region], np.asarray(logo, np.float64)[region]
    r, d = r - r.mean(0), d - d.mean(0)
    return float((r * d).sum() / (d * d).sum())


def logo_tuples(tuples: list[tuple[list[str], str]], seed: int, size: tuple[int, int], num_sources: int,
                min_area: float = 6.0) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """The tuples (sources, target) of synthetic file names whose target's logo covers at least
    ``min_area`` pixels and is shown as large by one of the first ``num_sources`` sources (so a model
    could copy it): {tuple index: the target's ``logo_layer`` (plain, logo)}, in tuple order."""
    def layer(name: str) -> tuple[np.ndarray, np.ndarray]:
        identity, _, index = parse_sample_name(name)
        return logo_layer(seed, identity, index, size)

    chosen = {}
    for i, (sources, target) in enumerate(tuples):
        target_layer = layer(target)
        if logo_area(target_layer[1]) >= min_area and any(
                logo_area(layer(s)[1]) >= min_area for s in sources[:num_sources]):
            chosen[i] = target_layer
    return chosen
