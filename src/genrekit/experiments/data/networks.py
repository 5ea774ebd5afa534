"""Heads on several networks: per-track means of mn04, or of musicnn and mn04 side by side, as a run's data.

``--input mn04`` / ``--input musicnn+mn04`` (issue 23, item 4). The rows are the same per-track means the
shipped ``genrekit-gtzan-ears`` head reads (an ``ears`` input, :class:`genrekit.models.inputs.EarsInput`):
musicnn's ``penultimate`` (or ``taggram``) mean over a file's audible 3 s patches (the one musicnn analysis
cache, as ``--input musicnn``) next to mn04's ``features`` mean over its audible 10 s windows (the one mn04
analysis cache, ``networks.mn04.analysis``). A model fitted here carries that ``ears`` input, so
``genrekit predict`` runs it on audio as it runs the shipped model.

mn04 hears audio only (32 kHz up to 15 kHz; a Kaggle image stops at 11 kHz): a GTZAN track with only an
image is left out and listed in ``extra["failed"]`` with why. Every part of every kept row is kept
(``extra["parts"]``: the AudioSet ``mn04_sigmoid`` and MSD ``musicnn_taggram`` means too), so a zero-shot
expert (:data:`ZERO_SHOT_MAPS`) is scored on the same tracks and folds as the heads.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from genrekit.errors import DatasetError, ModelError
from genrekit.experiments.data.embeddings import EmbeddingSource, check_labelled, embedding_table
from genrekit.experiments.data.tables import Arrays

__all__ = ["NETWORK_INPUTS", "ZERO_SHOT_MAPS", "NetworkSource", "input_parts", "network_table", "zero_shot_model"]

# what a head can learn from: GTZAN features are not a network; "musicnn" is EmbeddingSource's
NETWORK_INPUTS = ("musicnn", "mn04", "musicnn+mn04")
MN04_BACKEND = "onnx"  # mn04's only backend
NO_AUDIO = "no audio: mn04 hears audio only (a Kaggle image stops at 11 kHz)"

# zero-shot experts by name: per GTZAN genre ("msd", MSD tag) or ("as", AudioSet class); docs/ears.md
ZERO_SHOT_MAPS: dict[str, dict[str, tuple[str, str]]] = {
    "zeroshot": {
        "blues": ("msd", "blues"), "classical": ("as", "Classical music"), "country": ("msd", "country"),
        "disco": ("as", "Disco"), "hiphop": ("msd", "Hip-Hop"), "jazz": ("msd", "jazz"), "metal": ("msd", "metal"),
        "pop": ("msd", "pop"), "reggae": ("as", "Reggae"), "rock": ("msd", "rock"),
    },
    "zeroshot-audioset": {
        "blues": ("as", "Blues"), "classical": ("as", "Classical music"), "country": ("as", "Country"),
        "disco": ("as", "Disco"), "hiphop": ("as", "Hip hop music"), "jazz": ("as", "Jazz"),
        "metal": ("as", "Heavy metal"), "pop": ("as", "Pop music"), "reggae": ("as", "Reggae"),
        "rock": ("as", "Rock music"),
    },
}


def input_parts(input: str, layer: str = "penultimate") -> list[str]:
    """The ``ears`` parts a head on ``input`` reads (``layer``: musicnn's, penultimate or taggram)."""
    if input not in NETWORK_INPUTS[1:]:
        raise DatasetError(f"unknown network input {input!r}; choose from {', '.join(NETWORK_INPUTS)}")
    if input == "mn04":
        return ["mn04_features"]
    if layer not in ("penultimate", "taggram"):
        raise DatasetError(f"--input musicnn+mn04 takes musicnn's penultimate or taggram layer, not {layer!r} "
                           "(predict reads those two per patch)")
    return [f"musicnn_{layer}", "mn04_features"]


def _mn04_item(path: str) -> Any:
    """One file's mn04 analysis (module level: runs in workers)."""
    from genrekit.networks import settings

    return settings("mn04", MN04_BACKEND).analyse(path)


def mn04_means(paths: Sequence[str], *, progress: bool = True, jobs: int = 1
               ) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], list[tuple[str, str]]]:
    """Per file (features mean, sigmoid mean) over its audible 10 s windows, through the one mn04 analysis
    cache; and the files that failed, with why (unreadable, silent)."""
    from genrekit.networks import settings
    from genrekit.run.cached import cached_map
    from genrekit.run.engines import LocalEngine
    from genrekit.run.items import ItemError

    s = settings("mn04", MN04_BACKEND)
    cache = s.cache()
    out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    failed: list[tuple[str, str]] = []
    for r in cached_map(_mn04_item, list(paths), cache, desc="mn04", engine=LocalEngine(jobs=jobs, progress=progress),
                        load=lambda k: s.load(cache, k), save=lambda k, a: s.save(cache, k, a),
                        key_error=lambda it, exc: ItemError("", f"unreadable: {exc}")):
        if not r.ok:
            failed.append((r.input, str(r.error)))
            continue
        m = r.value.means(("features", "taggram"))
        out[r.input] = (np.asarray(m["features"], np.float64), np.asarray(m["taggram"], np.float64))
    return out, failed


def _audio_items(path: Path) -> tuple[list[tuple[str, str, str]], list[tuple[str, str]]]:
    """(track id, label, path) of every audio file of ``path`` (folder-per-label or a GTZAN root), and the
    GTZAN tracks with only a Kaggle image, as failures."""
    from genrekit import datasets

    if (path / "images_original").is_dir():
        g = datasets.GTZAN(path)
        audio = [(t.track_id, t.label, str(t.path)) for t in g.audio_tracks()]
        have = {a[0] for a in audio}
        return audio, [(str(t.path), NO_AUDIO) for t in g.image_tracks() if t.track_id not in have]
    return [(t.track_id, t.label, str(t.path)) for t in datasets.scan_audio(path)], []


def network_table(data: str | os.PathLike, *, input: str = "mn04", layer: str = "penultimate",
                  progress: bool = True, jobs: int = 1):
    """A :class:`~genrekit.datasets.FeatureTable` of per-track ``input`` rows (:func:`input_parts`, column
    names as the ``ears`` input names them) of folder-per-label audio or a GTZAN root's audio.
    ``extra["failed"]``: files left out, with why (image-only GTZAN tracks, unreadable or silent files);
    ``extra["parts"]``: every part's per-track means, row-aligned (for zero-shot experts)."""
    from genrekit import datasets
    from genrekit.models.inputs import EarsInput

    parts = input_parts(input, layer)
    path = Path(data)
    if not path.is_dir():
        raise DatasetError(f"{path}: --input {input} needs folder-per-label audio or a GTZAN root (mn04 hears audio "
                           "only; an .npz table or a feature CSV holds no mn04 means)")
    items, failed = _audio_items(path)
    check_labelled(items, path)
    got: dict[str, dict[str, np.ndarray]] = {p: {} for _, _, p in items}
    if input == "musicnn+mn04":
        for lay in ("penultimate", "taggram"):  # the second layer reads the same cache entries
            t = embedding_table(path, layer=lay, source="audio", progress=progress, jobs=jobs)
            for p, row in zip(t.filenames, t.X, strict=True):
                got[str(p)][f"musicnn_{lay}"] = row
            if lay == "penultimate":
                failed += [(p, f"musicnn: {why}") for p, why in t.extra.get("failed", [])]
    means, bad = mn04_means([p for _, _, p in items], progress=progress, jobs=jobs)
    failed += [(p, f"mn04: {why}") for p, why in bad]
    for p, (feats, sig) in means.items():
        got[p].update(mn04_features=feats, mn04_sigmoid=sig)
    need = set(parts) | ({"musicnn_taggram"} if input == "musicnn+mn04" else set()) | {"mn04_sigmoid"}
    kept = [it for it in items if need <= set(got[it[2]])]
    if not kept:
        raise DatasetError(f"{path}: none of the {len(items)} files could be heard ({failed[0][1] if failed else ''})")
    all_parts = {p: np.vstack([got[it[2]][p] for it in kept]) for p in sorted(need)}
    X = np.hstack([all_parts[p] for p in parts])
    cols = EarsInput.create(parts).columns
    once: dict[str, str] = {}
    for p, why in failed:  # one entry a file: its first reason (a file musicnn cannot read, mn04 cannot either)
        once.setdefault(p, why)
    return datasets.FeatureTable(X, np.array([i[1] for i in kept]), np.array([i[0] for i in kept]),
                                 np.array([i[2] for i in kept]), cols, source=str(path),
                                 extra={"failed": list(once.items()), "domains": np.full(len(kept), "audio"),
                                        "parts": all_parts, "input": input})


def zero_shot_model(name: str, classes: Sequence[str]):
    """An unfitted :class:`~genrekit.models.ears.ZeroShotModel` ``name`` (:data:`ZERO_SHOT_MAPS`) over
    ``classes`` (GTZAN genres), reading an ``ears`` input of the parts its map needs."""
    from genrekit.models.ears import EarsInput, ZeroShotModel
    from genrekit.networks.mn04.spec import labels
    from genrekit.networks.musicnn.spec import tag_names

    mapping = ZERO_SHOT_MAPS[name]
    unknown = [c for c in classes if c not in mapping]
    if unknown:
        raise ModelError(f"{name}: a zero-shot expert knows the ten GTZAN genres; {', '.join(unknown[:5])} "
                         "is not one of them")
    srcs = {mapping[c][0] for c in classes}
    parts = [p for s, p in (("msd", "musicnn_taggram"), ("as", "mn04_sigmoid")) if s in srcs]
    offsets = dict(zip(parts, np.cumsum([0] + [{"musicnn_taggram": 50, "mn04_sigmoid": 527}[p] for p in parts]),
                       strict=False))
    msd, aset = list(tag_names("MSD_musicnn")), list(labels())
    index = [int(offsets["musicnn_taggram"]) + msd.index(n) if s == "msd" else int(offsets["mn04_sigmoid"]) + aset.index(n)
             for s, n in (mapping[c] for c in classes)]
    return ZeroShotModel(list(classes), index, EarsInput.create(parts).to_meta(),
                         [f"{s}:{n}" for s, n in (mapping[c] for c in classes)])


class NetworkSource(EmbeddingSource):
    """Per-track rows of mn04, or musicnn and mn04 (:func:`network_table`), as a run's data: models fitted
    on it carry an ``ears`` input (predict runs them on audio). A zero-shot expert is not fitted on rows:
    it reads the parts of its own ``ears`` input, taken from the same tracks."""

    def __init__(self, table, *, layer: str = "penultimate", standardise: str = "none"):
        if standardise != "none":
            raise DatasetError(f"--standardise {standardise} applies to --input musicnn only (mn04 rows are all "
                               "audio-derived; logreg standardises its columns itself)")
        super().__init__(table, layer=layer, standardise="none")
        self.input = str(table.extra.get("input", "mn04"))
        self.parts: dict[str, np.ndarray] = dict(table.extra.get("parts", {}))

    @classmethod
    def load(cls, data: str | os.PathLike, *, input: str = "mn04", layer: str = "penultimate",
             standardise: str = "none", progress: bool = True, jobs: int = 1, **_ignored: Any) -> NetworkSource:
        if standardise != "none":  # before minutes of embedding
            raise DatasetError(f"--standardise {standardise} applies to --input musicnn only (mn04 rows are all "
                               "audio-derived; logreg standardises its columns itself)")
        return cls(network_table(data, input=input, layer=layer, progress=progress, jobs=jobs), layer=layer)

    def describe(self) -> dict[str, Any]:
        d = super().describe()
        d.pop("musicnn", None)
        return {**d, "network": {"input": self.input, "parts": input_parts(self.input, self.layer), "pool": "mean",
                                 "mn04": "features mean over the audible 10 s windows (at most 6 per song)",
                                 "left_out": len(self.failed)}}

    def input_for(self, train_rows: np.ndarray) -> dict:
        from genrekit.models.inputs import EarsInput

        return EarsInput.create(input_parts(self.input, self.layer)).to_meta()

    def model_arrays(self, model, tracks: Sequence[str]) -> Arrays:
        """The rows of ``tracks`` as ``model``'s ``ears`` input names them: its parts, in order."""
        idx = self.rows(tracks)
        inp = getattr(model, "input_", None) or {}
        parts = inp.get("parts") or input_parts(self.input, self.layer)
        missing = [p for p in parts if p not in self.parts]
        if missing:
            raise DatasetError(f"{self.source}: {type(model).__name__} reads {', '.join(missing)}, which --input "
                               f"{self.input} lacks (zero-shot experts mapping MSD tags need --input musicnn+mn04)")
        return Arrays(np.hstack([self.parts[p][idx] for p in parts]), self.labels[idx], self.track_ids[idx])

    def fit(self, model, train: Sequence[str], valid: Sequence[str]) -> None:
        """Fit a head on the training tracks' rows; a zero-shot expert learns nothing (it checks its map)."""
        if getattr(model, "kind", None) == "zero-shot":
            model.fit()
            return
        super().fit(model, train, valid)
