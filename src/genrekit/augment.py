"""Augmentation of normalised log-mel slices (torch, on the batch, during training only).

Small GTZAN needs augmentation to train a CNN at all, and it has to act on the *representation the
model sees* (normalised levels of ``amplitude_to_db(mel power, ref=max)``, see
:mod:`genrekit.spectrogram`) so that it works the same whether the slices came from audio or from
inverted Kaggle images. Each transform is switched on by a flag of :class:`AugmentConfig`, whose
``to_dict()`` goes into every run's config so results say what was used.

Transforms (``x``: float tensor ``[batch, n_mels, frames]`` in [0, 1]):

* ``crop`` -- random time crop / shift: training slices are cut a little wider than the model input
  and a random window is taken (:func:`random_crop`); at test time the centre is used.
* ``gain`` -- random level offset. With ref = max normalisation a pure gain cancels out, so this
  models what remains of it: a shift of the whole matrix relative to the 80 dB floor.
* ``noise`` -- additive noise *in the power domain* at a random level below the peak, then back to
  levels (what adding noise to the waveform does to a mel spectrogram).
* ``pitch`` -- pitch shift by +-``pitch_semitones``: the frequency axis is resampled in Hz
  (mel centre frequencies scaled by 2**(s/12)), not a plain bin roll, since mel bins are not log-spaced.
* ``specaugment`` -- SpecAugment time and frequency masks (Park et al. 2019), filled with the slice mean.
* ``mixup`` -- convex mixtures of pairs of slices and their one-hot targets (Zhang et al. 2018).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import numpy as np

from genrekit.errors import GenrekitError

NAMES = ("crop", "gain", "noise", "pitch", "specaugment", "mixup")
DEFAULT = ("crop", "specaugment", "mixup")


@dataclass
class AugmentConfig:
    """Which augmentations run, and how strongly. ``AugmentConfig.parse("crop,mixup")`` from the CLI."""

    crop: bool = False
    crop_frames: int = 16  # extra frames cut around each training slice for the random crop
    gain: bool = False
    gain_db: float = 6.0  # +- dB level offset
    noise: bool = False
    noise_db: tuple[float, float] = (-60.0, -30.0)  # noise power relative to the peak, dB (20*log10 scale)
    pitch: bool = False
    pitch_semitones: float = 2.0
    specaugment: bool = False
    time_masks: int = 2
    time_mask_frames: int = 20
    freq_masks: int = 2
    freq_mask_bins: int = 16
    mixup: bool = False
    mixup_alpha: float = 0.3
    prob: float = 0.5  # probability of applying each of gain/noise/pitch to a sample

    @classmethod
    def parse(cls, spec: str | None | AugmentConfig | dict) -> AugmentConfig:
        """``"none"``, ``"default"``, ``"all"`` or a comma list of names from :data:`NAMES`."""
        if isinstance(spec, AugmentConfig):
            return spec
        if isinstance(spec, dict):
            known = {f.name for f in fields(cls)}
            bad = sorted(set(spec) - known)
            if bad:
                raise GenrekitError(f"unknown augmentation setting(s) {bad}; known: {sorted(known)}")
            d = dict(spec)
            if "noise_db" in d:
                d["noise_db"] = tuple(d["noise_db"])
            return cls(**d)
        spec = (spec or "none").strip().lower()
        if spec in ("none", ""):
            return cls()
        names = NAMES if spec == "all" else DEFAULT if spec == "default" else [s.strip() for s in spec.split(",")]
        bad = [n for n in names if n not in NAMES]
        if bad:
            raise GenrekitError(
                f"unknown augmentation {bad[0]!r}: choose from {', '.join(NAMES)} (or none, default, all)"
            )
        return cls(**dict.fromkeys(names, True))

    def enabled(self) -> list[str]:
        return [n for n in NAMES if getattr(self, n)]

    def to_dict(self) -> dict:
        d = asdict(self)
        d["noise_db"] = list(self.noise_db)
        d["enabled"] = self.enabled()
        return d


# ------------------------------------------------------------------------------------------- transforms
def random_crop(x, *, width: int, generator=None):
    """Random ``width``-frame window of each slice (a random time shift)."""
    import torch

    extra = x.shape[-1] - width
    if extra < 0:
        raise GenrekitError(f"random_crop: slices have {x.shape[-1]} frames, fewer than the width {width}")
    if extra == 0:
        return x
    starts = torch.randint(0, extra + 1, (x.shape[0],), generator=generator)
    idx = starts[:, None] + torch.arange(width)[None, :]
    return torch.gather(x, -1, idx[:, None, :].expand(-1, x.shape[1], -1).to(x.device))


def center_crop(x, *, width: int):
    """The deterministic counterpart of :func:`random_crop` (evaluation and prediction)."""
    extra = x.shape[-1] - width
    if extra <= 0:
        return x
    s = extra // 2
    return x[..., s : s + width]


def _mask(x, p: float, generator):
    import torch

    return (torch.rand(x.shape[0], generator=generator) < p).to(x.device)


def gain(x, *, max_db: float = 6.0, top_db: float = 80.0, p: float = 1.0, generator=None):
    """Shift levels by a random +-``max_db`` (relative to the ``top_db`` floor), clipped to [0, 1]."""
    import torch

    g = (torch.rand(x.shape[0], generator=generator) * 2 - 1).to(x.device) * (max_db / top_db)
    g = g * _mask(x, p, generator)
    return (x + g[:, None, None]).clamp(0.0, 1.0)


def add_noise(x, *, db_range: tuple[float, float] = (-60.0, -30.0), top_db: float = 80.0, p: float = 1.0, generator=None):
    """Add flat noise in the power domain at a random level (dB below the peak), then back to levels."""
    import torch

    lo, hi = db_range
    level_db = (lo + (hi - lo) * torch.rand(x.shape[0], generator=generator)).to(x.device)
    noise = torch.rand(x.shape, generator=generator).to(x.device) * 2.0  # mean 1, fluctuating per bin
    db = x * top_db - top_db  # levels -> dB (20*log10 scale, 0 at peak)
    power = 10.0 ** (db / 20.0) + noise * (10.0 ** (level_db / 20.0))[:, None, None]
    out = (20.0 * torch.log10(power / power.amax(dim=(1, 2), keepdim=True)) + top_db) / top_db
    keep = _mask(x, p, generator)[:, None, None]
    return torch.where(keep, out.clamp(0.0, 1.0), x)


def _mel_centres(n_mels: int, sr: int, fmax: float | None = None) -> np.ndarray:
    """Centre frequency (Hz) of each of ``n_mels`` bands of the log-mel front end's filterbank."""
    from genrekit.dsp import mel_frequencies

    return mel_frequencies(n_mels + 2, fmin=0.0, fmax=sr / 2 if fmax is None else fmax)[1:-1]


def pitch_shift(x, *, semitones, sr: int = 22050):
    """Shift the frequency axis by ``semitones`` (scalar or one per sample), resampling in Hz.

    Bin ``b`` of the output takes the input at frequency ``f_b / 2**(s/12)`` (linear interpolation
    between mel-bin centres); frequencies beyond the input range get the floor level 0.
    """
    import torch

    n_mels = x.shape[1]
    centres = torch.as_tensor(_mel_centres(n_mels, sr), dtype=torch.float32, device=x.device)
    s = torch.as_tensor(semitones, dtype=torch.float32, device=x.device).reshape(-1)
    if s.numel() == 1:
        s = s.expand(x.shape[0])
    src_f = centres[None, :] / (2.0 ** (s[:, None] / 12.0))  # [B, n_mels]
    pos = torch.searchsorted(centres.contiguous(), src_f.contiguous()).clamp(1, n_mels - 1)
    f0, f1 = centres[pos - 1], centres[pos]
    a = ((src_f - f0) / (f1 - f0)).clamp(0.0, 1.0)
    lo = torch.gather(x, 1, (pos - 1)[:, :, None].expand(-1, -1, x.shape[2]))
    hi = torch.gather(x, 1, pos[:, :, None].expand(-1, -1, x.shape[2]))
    out = lo * (1 - a[:, :, None]) + hi * a[:, :, None]
    inside = ((src_f >= centres[0]) & (src_f <= centres[-1]))[:, :, None]
    return torch.where(inside, out, torch.zeros_like(out))


def random_pitch(x, *, max_semitones: float = 2.0, sr: int = 22050, p: float = 1.0, generator=None):
    """:func:`pitch_shift` by a random amount in +-``max_semitones`` for a fraction ``p`` of the batch."""
    import torch

    s = (torch.rand(x.shape[0], generator=generator) * 2 - 1) * max_semitones
    s = s * _mask(x, p, generator).cpu()
    return pitch_shift(x, semitones=s, sr=sr)


def spec_augment(x, *, time_masks: int = 2, time_width: int = 20, freq_masks: int = 2, freq_width: int = 16, generator=None):
    """SpecAugment masks: random bands of frames and of mel bins set to each slice's mean level."""
    import torch

    b, m, t = x.shape
    keep = torch.ones_like(x, dtype=torch.bool)
    ar_t = torch.arange(t, device=x.device)[None, :]
    ar_f = torch.arange(m, device=x.device)[None, :]
    for _ in range(time_masks):
        w = torch.randint(0, time_width + 1, (b,), generator=generator).to(x.device)
        s = (torch.rand(b, generator=generator).to(x.device) * (t - w + 1).clamp(min=1)).long()
        keep &= ~((ar_t >= s[:, None]) & (ar_t < (s + w)[:, None]))[:, None, :]
    for _ in range(freq_masks):
        w = torch.randint(0, freq_width + 1, (b,), generator=generator).to(x.device)
        s = (torch.rand(b, generator=generator).to(x.device) * (m - w + 1).clamp(min=1)).long()
        keep &= ~((ar_f >= s[:, None]) & (ar_f < (s + w)[:, None]))[:, :, None]
    fill = x.mean(dim=(1, 2), keepdim=True).expand_as(x)
    return torch.where(keep, x, fill)


def mixup(x, y_onehot, *, alpha: float = 0.3, generator=None):
    """Mix each sample with a random partner: ``lam*x + (1-lam)*x[perm]``, same for the targets."""
    import torch

    if alpha <= 0:
        return x, y_onehot
    lam = float(np.random.default_rng(int(torch.randint(0, 2**31 - 1, (1,), generator=generator))).beta(alpha, alpha))
    lam = max(lam, 1.0 - lam)  # keep the first sample dominant so its label stays the main one
    perm = torch.randperm(x.shape[0], generator=generator).to(x.device)
    return lam * x + (1 - lam) * x[perm], lam * y_onehot + (1 - lam) * y_onehot[perm]


def apply(x, y_onehot, cfg: AugmentConfig, *, width: int, sr: int = 22050, generator=None):
    """Run the enabled augmentations on a training batch; returns ``(x, soft_targets)``."""
    if cfg.crop:
        x = random_crop(x, width=width, generator=generator)
    else:
        x = center_crop(x, width=width)
    if cfg.gain:
        x = gain(x, max_db=cfg.gain_db, p=cfg.prob, generator=generator)
    if cfg.noise:
        x = add_noise(x, db_range=cfg.noise_db, p=cfg.prob, generator=generator)
    if cfg.pitch:
        x = random_pitch(x, max_semitones=cfg.pitch_semitones, sr=sr, p=cfg.prob, generator=generator)
    if cfg.specaugment:
        x = spec_augment(
            x, time_masks=cfg.time_masks, time_width=cfg.time_mask_frames, freq_masks=cfg.freq_masks,
            freq_width=cfg.freq_mask_bins, generator=generator,
        )
    if cfg.mixup:
        x, y_onehot = mixup(x, y_onehot, alpha=cfg.mixup_alpha, generator=generator)
    return x, y_onehot
