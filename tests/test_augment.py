"""Augmentations: shapes, ranges and that each one does what it says."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from genrekit import augment as A
from genrekit.errors import GenrekitError


def _batch(b=4, m=64, t=50, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, m, t, generator=g)


def test_parse_flags_and_record():
    assert A.AugmentConfig.parse("none").enabled() == []
    assert A.AugmentConfig.parse("default").enabled() == list(A.DEFAULT)
    assert A.AugmentConfig.parse("all").enabled() == list(A.NAMES)
    cfg = A.AugmentConfig.parse("pitch, noise")
    assert cfg.enabled() == ["noise", "pitch"]
    d = cfg.to_dict()
    assert d["enabled"] == ["noise", "pitch"] and d["pitch_semitones"] == 2.0
    assert A.AugmentConfig.parse({k: v for k, v in d.items() if k != "enabled"}) == cfg
    with pytest.raises(GenrekitError, match="unknown augmentation 'reverb'"):
        A.AugmentConfig.parse("crop,reverb")


def test_random_crop_shifts_and_center_crop_is_fixed():
    x = torch.arange(40.0).repeat(3, 2, 1)  # [3, 2, 40], values = frame index
    g = torch.Generator().manual_seed(0)
    starts = {int(A.random_crop(x, width=30, generator=g)[0, 0, 0]) for _ in range(30)}
    assert len(starts) > 3 and min(starts) >= 0 and max(starts) <= 10
    c = A.center_crop(x, width=30)
    assert c.shape == (3, 2, 30) and int(c[0, 0, 0]) == 5
    with pytest.raises(GenrekitError):
        A.random_crop(x, width=41)


def test_gain_offsets_levels_within_range():
    x = torch.full((8, 4, 5), 0.5)
    y = A.gain(x, max_db=8.0, generator=torch.Generator().manual_seed(1))
    assert y.shape == x.shape and 0 <= y.min() and y.max() <= 1
    offsets = (y - x)[:, 0, 0]
    assert offsets.abs().max() <= 8.0 / 80 + 1e-6 and offsets.abs().min() > 0
    assert torch.allclose(y - x, offsets[:, None, None].expand_as(x))  # one offset per slice


def test_noise_raises_the_floor():
    x = torch.zeros(2, 16, 20)
    x[:, 8, :] = 1.0  # one loud band, rest at the -80 dB floor
    y = A.add_noise(x, db_range=(-40.0, -40.0), generator=torch.Generator().manual_seed(0))
    assert y.shape == x.shape and 0 <= y.min() and y.max() <= 1
    quiet = torch.cat([y[:, :8], y[:, 9:]], 1)
    assert quiet.mean() > 0.35  # noise ~40 dB below the peak sits ~half-way up the 80 dB range
    assert torch.allclose(y[:, 8].mean(), torch.tensor(1.0), atol=0.05)


def test_pitch_shift_moves_a_partial_up_an_octave():
    from genrekit.augment import _mel_centres

    centres = _mel_centres(128, 22050)
    b500 = int(np.argmin(np.abs(centres - 500)))
    b1000 = int(np.argmin(np.abs(centres - 1000)))
    x = torch.zeros(1, 128, 4)
    x[0, b500] = 1.0
    y = A.pitch_shift(x, semitones=12.0)
    assert abs(int(y[0, :, 0].argmax()) - b1000) <= 1
    z = A.pitch_shift(x, semitones=0.0)
    assert torch.allclose(z, x, atol=1e-5)
    per_sample = A.pitch_shift(torch.cat([x, x]), semitones=torch.tensor([0.0, 12.0]))
    assert torch.allclose(per_sample[0], x[0], atol=1e-5) and torch.allclose(per_sample[1], y[0])


def test_spec_augment_masks_with_the_mean():
    x = _batch()
    g = torch.Generator().manual_seed(3)
    y = A.spec_augment(x, time_masks=1, time_width=10, freq_masks=1, freq_width=8, generator=g)
    assert y.shape == x.shape
    changed = (y != x)
    assert changed.any()
    means = x.mean(dim=(1, 2))
    for i in range(x.shape[0]):
        if changed[i].any():
            assert torch.allclose(y[i][changed[i]], means[i].expand(int(changed[i].sum())))
    same = A.spec_augment(x, time_masks=2, time_width=0, freq_masks=2, freq_width=0, generator=g)
    assert torch.equal(same, x)


def test_mixup_is_convex_and_targets_sum_to_one():
    x = _batch(b=6)
    t = torch.nn.functional.one_hot(torch.arange(6) % 3, 3).float()
    xm, tm = A.mixup(x, t, alpha=0.4, generator=torch.Generator().manual_seed(0))
    assert xm.shape == x.shape and tm.shape == t.shape
    assert torch.allclose(tm.sum(1), torch.ones(6))
    assert (tm.max(1).values >= 0.5 - 1e-6).all()  # the sample's own label stays dominant
    assert xm.min() >= x.min() - 1e-6 and xm.max() <= x.max() + 1e-6


def test_apply_runs_all_enabled_and_crops_to_width():
    cfg = A.AugmentConfig.parse("all")
    x = _batch(b=5, m=128, t=146)
    t = torch.nn.functional.one_hot(torch.arange(5) % 2, 2).float()
    y, tt = A.apply(x, t, cfg, width=130, generator=torch.Generator().manual_seed(0))
    assert y.shape == (5, 128, 130) and tt.shape == (5, 2)
    assert torch.isfinite(y).all() and y.min() >= 0 and y.max() <= 1
    plain, tp = A.apply(x, t, A.AugmentConfig(), width=130)
    assert torch.equal(plain, x[..., 8:138]) and torch.equal(tp, t)
