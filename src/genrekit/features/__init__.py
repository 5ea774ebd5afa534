"""The 57 features of Kaggle's GTZAN tables (plus an extended set), fast and without librosa.

Kaggle's ``features_30_sec.csv`` was made with librosa 0.7 defaults: sr 22050, n_fft 2048, hop 512,
centred frames with *reflect* padding, mean and variance over frames. Calling librosa feature by
feature recomputes the STFT about ten times, runs two scipy median filters for HPSS (~1 s) and pays
20-30 s of numba compilation in a fresh environment. Here one decode feeds one STFT that every feature
shares, the median filters use scipy's O(n log k) 1-D rank filter over flattened rows (10x faster than
the 2-D filter librosa calls), and nothing needs numba, so a 30 s clip costs tens of milliseconds.

Every definition follows librosa's source; the differences that matter for the Kaggle values are
documented in ``docs/features.md`` (reflect padding, the librosa-0.7 HPSS length handling and tempo
prior). Long inputs are processed in blocks of frames, with exactly the same results, so memory stays
bounded (a 10-minute file needs a few hundred MB, not gigabytes).

One module per concern, as librosa splits them:

* :mod:`~genrekit.features.spectral` -- STFT magnitude, centroid, bandwidth, rolloff, flatness, contrast,
  RMS, zero crossings, mel, MFCC, delta, tuning, chroma, tonnetz;
* :mod:`~genrekit.features.decompose` -- HPSS and its median / remedian filters;
* :mod:`~genrekit.features.rhythm` -- onset strength and tempo;
* :mod:`~genrekit.features.filters` -- the chroma filterbank and the DCT basis (mel: :mod:`genrekit.dsp`);
* :mod:`~genrekit.features.gtzan` -- the table: :func:`extract`, :func:`extract_segments`,
  :func:`analyse_file`, :class:`FeatureSettings`, :func:`columns`.

The small public functions mirror librosa's (keyword arguments, ``y=`` or a precomputed ``S=``,
arrays shaped ``(..., n_freq, n_frames)``); :func:`extract` is the fast path that shares all the work.
Everything public is importable from here (``from genrekit.features import extract``).
"""

from __future__ import annotations

from genrekit.dsp import HOP_LENGTH, N_FFT, N_MELS, SR, fft_frequencies, mel_filterbank, power_to_db
from genrekit.features.decompose import (
    HPSS_KERNEL,
    HPSS_MODES,
    REMEDIAN_DILATIONS,
    hpss,
    median_filter,
    remedian_filter,
)
from genrekit.features.filters import chroma_filterbank
from genrekit.features.gtzan import (
    BLOCK_FRAMES,
    EXTENDED_COLUMNS,
    FEATURE_COLUMNS,
    FEATURES_VERSION,
    MAX_WHOLE_FILE_SECONDS,
    FeatureSettings,
    analyse_file,
    columns,
    extract,
    extract_segments,
    finite_analysis,
)
from genrekit.features.rhythm import onset_strength, tempo
from genrekit.features.spectral import (
    N_CONTRAST_BANDS,
    N_MFCC,
    chroma_stft,
    delta,
    estimate_tuning,
    melspectrogram,
    mfcc,
    rms,
    spectral_bandwidth,
    spectral_centroid,
    spectral_contrast,
    spectral_flatness,
    spectral_rolloff,
    stft,
    tonnetz,
    zero_crossing_rate,
)

__all__ = [
    "BLOCK_FRAMES", "EXTENDED_COLUMNS", "FEATURES_VERSION", "FEATURE_COLUMNS", "HOP_LENGTH", "HPSS_KERNEL",
    "HPSS_MODES", "MAX_WHOLE_FILE_SECONDS", "N_CONTRAST_BANDS", "N_FFT", "N_MELS", "N_MFCC", "REMEDIAN_DILATIONS",
    "SR", "FeatureSettings", "analyse_file", "chroma_filterbank", "chroma_stft", "columns", "delta",
    "estimate_tuning", "extract", "extract_segments", "fft_frequencies", "finite_analysis", "hpss", "median_filter",
    "remedian_filter", "mel_filterbank", "melspectrogram", "mfcc", "onset_strength", "power_to_db", "rms",
    "spectral_bandwidth", "spectral_centroid", "spectral_contrast", "spectral_flatness", "spectral_rolloff",
    "stft", "tempo", "tonnetz", "zero_crossing_rate",
]
