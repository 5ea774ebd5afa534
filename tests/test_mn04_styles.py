"""``genrekit.networks.mn04.styles`` on synthetic logits: probabilities, ranking, families, the uncertain rule."""

from __future__ import annotations

import numpy as np
import pytest

from genrekit.networks.mn04 import styles as S
from genrekit.networks.mn04.spec import GENRE_ROWS, N_CLASSES, genre_labels

NAMES = genre_labels()


def logit(p: float) -> float:
    return float(np.log(p / (1 - p)))


def windows(per_window: list[dict[str, float]], rest: float = 0.01) -> np.ndarray:
    """(windows, 527) logits: the named genre classes at the given probabilities, every other class at ``rest``."""
    z = np.full((len(per_window), N_CLASSES), logit(rest))
    for w, probs in enumerate(per_window):
        for name, p in probs.items():
            z[w, GENRE_ROWS.start + NAMES.index(name)] = logit(p)
    return z


def test_probabilities_are_mean_window_sigmoids_not_renormalised():
    z = windows([{"House music": 0.9, "Electronic music": 0.8}, {"House music": 0.5, "Electronic music": 0.8}])
    p = S.genre_probs(z, calibrated=False)
    assert p.shape == (48,)
    assert p[NAMES.index("House music")] == pytest.approx(0.7)
    assert p[NAMES.index("Electronic music")] == pytest.approx(0.8)
    assert p[NAMES.index("Jazz")] == pytest.approx(0.01)
    assert p.sum() > 1.5  # multi-label: nested classes keep their own probabilities
    np.testing.assert_allclose(S.genre_probs(z), S.calibrate(p))


def test_calibration_is_monotone_and_lifts_low_raw_numbers():
    raw = np.array([0.001, 0.02, 0.1, 0.3, 0.5, 0.9, 0.999])
    cal = S.calibrate(raw)
    assert np.all(np.diff(cal) > 0) and np.all((cal > 0) & (cal < 1))
    assert cal[1] > raw[1] and cal[2] > raw[2]  # AudioSet's sparse labels make raw numbers too low
    assert S.calibrate(0.0) > 0 and S.calibrate(1.0) < 1  # clipped, finite
    z = windows([{"House music": 0.3, "Techno": 0.2, "Jazz": 0.1}])
    assert [n for n, _ in S.styles(z, k=3)] == [n for n, _ in S.styles(z, k=3, calibrated=False)]


def test_styles_top_k_order_and_48_column_input_agree():
    z = windows([{"House music": 0.6, "Electronic music": 0.8, "Disco": 0.3, "Techno": 0.2}])
    top = S.styles(z, k=3)
    assert [n for n, _ in top] == ["Electronic music", "House music", "Disco"]
    assert top[0][1] == pytest.approx(float(S.calibrate(0.8)))
    assert S.styles(z[:, GENRE_ROWS.start:GENRE_ROWS.stop], k=3) == top
    assert S.styles(z[0], k=1) == top[:1]  # one window as a vector


def test_ties_keep_audioset_order():
    z = windows([{"Ska": 0.5, "Pop music": 0.5}])
    assert [n for n, _ in S.styles(z, k=2)] == ["Pop music", "Ska"]


def test_music_rows_outside_the_genre_block_are_ignored():
    z = windows([{"Jazz": 0.4}])
    z[0, 0] = z[0, 137] = logit(0.99)  # Speech, Music
    assert S.styles(z, k=1)[0][0] == "Jazz"


@pytest.mark.parametrize("bad", [np.zeros((0, N_CLASSES)), np.zeros((2, 10)), np.zeros((2, 3, 527)),
                                 np.full((1, N_CLASSES), np.nan)])
def test_bad_logits_raise(bad):
    with pytest.raises(ValueError):
        S.styles(bad)


@pytest.mark.parametrize("k", [0, 49, True, 1.5])
def test_bad_k_raises(k):
    with pytest.raises(ValueError):
        S.styles(windows([{}]), k=k)


def test_family_map_names_real_classes_and_families_do_not_overlap():
    seen: set[str] = set()
    for genre, classes in S.FAMILY.items():
        assert set(classes) <= set(NAMES), genre
        assert not seen & set(classes), genre
        seen |= set(classes)
    assert sorted(S.FAMILY) == sorted(["blues", "classical", "country", "disco", "hiphop", "jazz", "metal", "pop",
                                       "reggae", "rock"])


def test_beyond_ten_filters_and_keeps_order():
    got = S.beyond_ten([("House music", 0.7), ("Disco", 0.6), ("Funk", 0.2), ("Salsa music", 0.1)], min_p=0.15)
    assert got == [("House music", 0.7), ("Funk", 0.2)]
    assert S.beyond_ten({"Rock music": 0.9, "Heavy metal": 0.8}) == []
    with pytest.raises(ValueError, match="not one of"):
        S.beyond_ten([("Polka", 0.5)])


def test_uncertain_rule():
    house = S.all_styles(windows([{"House music": 0.7, "Electronic music": 0.8, "Disco": 0.25}]))
    disco = S.all_styles(windows([{"Disco": 0.6, "Funk": 0.3, "Pop music": 0.2}]))
    assert S.uncertain("disco", 0.9, house)  # confident, but AudioSet hears house beyond disco's family
    assert not S.uncertain("disco", 0.9, disco)
    assert S.uncertain("disco", 0.3, disco)  # today's low-score rule still holds
    weak = S.all_styles(windows([{"Funk": 0.05, "Disco": 0.02}]))
    assert not S.uncertain("disco", 0.9, weak)  # a faint beyond style does not count
    assert S.uncertain("disco", 0.9, weak, min_beyond=0.2)
    raw = S.all_styles(windows([{"Funk": 0.05, "Disco": 0.02}]), calibrated=False)
    assert not S.uncertain("disco", 0.9, raw, min_beyond=0.2)
    with pytest.raises(ValueError):
        S.uncertain("polka", 0.9, disco)
    with pytest.raises(ValueError):
        S.uncertain("disco", 1.5, disco)
