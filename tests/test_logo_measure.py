"""The logo study's measure (docs/experiments/logo_measure.py): the contrast an image draws, the
tuples that can show the logo."""

from __future__ import annotations

import numpy as np
import pytest

from logo_measure import logo_area, logo_contrast, logo_tuples  # docs/experiments/, on pytest's path
from msgen.data.synthetic import logo_layer, parse_sample_name, render_sample

SIZE = (128, 64)


def test_logo_contrast_reads_how_much_of_the_logo_is_drawn():
    plain, logo = next(layer for index in range(24) if logo_area((layer := logo_layer(5, 3, index, SIZE))[1]) >= 6)
    assert logo_contrast(plain + logo, plain, logo) == pytest.approx(1.0)
    assert logo_contrast(plain, plain, logo) == pytest.approx(0.0, abs=1e-9)
    # Half the logo on a shirt drawn 20 levels too light, plus noise: still a half.
    noise = np.random.default_rng(0).normal(0, 3, plain.shape)
    assert logo_contrast(plain + 0.5 * logo + 20 + noise, plain, logo) == pytest.approx(0.5, abs=0.05)
    # A logo drawn one pixel too far to the right counts less than one in place.
    assert logo_contrast(plain + np.roll(logo, 1, axis=1), plain, logo) < 0.9
    with pytest.raises(ValueError, match="not seen"):
        logo_contrast(plain, plain, np.zeros_like(logo))


def test_logo_tuples_keeps_the_targets_whose_logo_a_source_shows():
    names = [render_sample(5, 3, index, SIZE)[0] for index in range(12)]
    areas = {name: logo_area(logo_layer(5, 3, parse_sample_name(name)[2], SIZE)[1]) for name in names}
    shown = [n for n in names if areas[n] >= 6]
    hidden = [n for n in names if areas[n] < 6]
    assert len(shown) >= 2 and hidden
    tuples = [(hidden[:1] + shown[1:2], shown[0]),  # the second source shows it
              (hidden[:1] + shown[1:2], hidden[0]),  # the target does not show it
              (shown[1:2] + hidden[:1], shown[0])]  # the first source shows it
    chosen = logo_tuples(tuples, 5, SIZE, num_sources=2)
    assert list(chosen) == [0, 2]
    plain, logo = chosen[0]
    expected = logo_layer(5, 3, parse_sample_name(shown[0])[2], SIZE)
    np.testing.assert_array_equal(plain, expected[0])
    np.testing.assert_array_equal(logo, expected[1])
    assert list(logo_tuples(tuples, 5, SIZE, num_sources=1)) == [2]
