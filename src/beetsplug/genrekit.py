"""beets plugin: genres from genrekit's audio classifier (``plugins: genrekit`` in beets' config).

``beet genrekit [QUERY]`` classifies the matching items and stores the genre in beets' genre field
(``genres`` in beets >= 2.6, ``genre`` before), with the policies of ``genrekit tag`` (only-empty by
default, ``--overwrite``, ``--append``, ``--min-confidence``, ``--top-k``), so both give the same values.
Scores go into flexible attributes: ``genrekit_genre`` (the model's best label), ``genrekit_confidence``
and ``genrekit_scores`` (``label=score`` pairs); with ``tags: N`` the N most probable musicnn (MSD) tags
go into ``genrekit_tags`` (``electronic, dance, House``), whatever the genre policy decides. With ``auto: yes`` new imports are classified too.

beets finds this module as ``beetsplug.genrekit``: ``beetsplug`` is a namespace package, and genrekit
ships this one file in it (``pip install "genrekit[beets]"``).

Configuration (all optional)::

    genrekit:
        auto: no            # classify items as they are imported
        policy: only-empty  # or overwrite, append
        min_confidence: 0.0
        top_k: 1
        labels: display     # Hip-Hop, Rock, ...; "model" keeps the model's labels (hiphop, rock)
        model: null         # a genrekit model file; null is the shipped model
        backend: onnx       # or torch
        jobs: 1             # classification worker processes
        cache: yes          # reuse predictions by file content (shared with genrekit tag)
        tags: 0             # N > 0: the N most probable musicnn tags into genrekit_tags
"""

from __future__ import annotations

import os
from typing import Any

from beets import ui
from beets.dbcore import types
from beets.library import Item
from beets.plugins import BeetsPlugin

GENRES_FIELD = "genres" if "genres" in Item._fields else "genre"


def item_genres(item: Item) -> list[str]:
    """The item's genre values, whichever beets version stores them."""
    if GENRES_FIELD == "genres":
        return [g for g in (item.get("genres") or []) if g]
    value = item.get("genre") or ""
    return [value] if value else []


def set_item_genres(item: Item, values: list[str]) -> None:
    if GENRES_FIELD == "genres":
        item.genres = list(values)
    else:  # beets < 2.6 has one string: genrekit joins several the way its multi-value tags read in ID3v2.3
        item.genre = "/".join(values)


FAILED = ("error", "tag errors", "write errors")  # counts that make `beet genrekit` exit non-zero


def _sync(item: Item, *, write: bool, counts: dict[str, int]) -> None:
    """``item.try_sync(write=write, move=False)``, counting a file beets could not write (it logs why)."""
    if write and not item.try_write():
        counts["write errors"] = counts.get("write errors", 0) + 1
    item.store()


class GenrekitPlugin(BeetsPlugin):
    item_types = {
        "genrekit_genre": types.STRING,
        "genrekit_confidence": types.FLOAT,
        "genrekit_scores": types.STRING,
        "genrekit_tags": types.STRING,
    }

    def __init__(self) -> None:
        super().__init__()
        self.config.add({
            "auto": False, "policy": "only-empty", "min_confidence": 0.0, "top_k": 1, "labels": "display",
            "model": None, "backend": "onnx", "jobs": 1, "cache": True, "tags": 0,
        })
        self._clf = None
        if self.config["auto"].get(bool):
            self.import_stages = [self.imported]

    # ------------------------------------------------------------------------------------ settings
    def _settings(self, opts: Any = None):
        from genrekit.library.tagging import POLICIES, TagSettings

        policy = getattr(opts, "policy", None) or self.config["policy"].as_str()
        if policy not in POLICIES:
            raise ui.UserError(f"genrekit: policy must be one of {', '.join(POLICIES)}, not {policy!r}")
        mc = getattr(opts, "min_confidence", None)
        k = getattr(opts, "top_k", None)
        settings = TagSettings(
            policy=policy,
            min_confidence=float(self.config["min_confidence"].as_number() if mc is None else mc),
            top_k=int(self.config["top_k"].get(int) if k is None else k),
            labels=self.config["labels"].as_choice(["display", "model"]),
        )
        if not 0.0 <= settings.min_confidence <= 1.0 or settings.top_k < 1:
            raise ui.UserError("genrekit: min_confidence must be within 0..1 and top_k >= 1")
        return settings

    def _classifier(self):
        if self._clf is None:
            from genrekit.errors import GenrekitError
            from genrekit.predict import GenreClassifier

            model = self.config["model"].get()
            try:
                self._clf = GenreClassifier.load(model, backend=self.config["backend"].as_str())
            except GenrekitError as exc:
                raise ui.UserError(f"genrekit: {exc}") from None
        return self._clf

    # ------------------------------------------------------------------------------------ the work
    def classify(self, items: list[Item], *, settings, write: bool, pretend: bool = False,
                 jobs: int | None = None) -> dict[str, int]:
        """Classify ``items`` and apply ``settings``' policy to their genre; returns counts per action."""
        from genrekit.library import tagging

        clf = self._classifier()
        cache = tagging.prediction_cache(clf, enabled=self.config["cache"].get(bool))
        by_path: dict[str, list[Item]] = {}
        counts: dict[str, int] = {}
        for item in items:
            current = item_genres(item)
            if not tagging.needs_prediction(current, policy=settings.policy):
                counts["skipped"] = counts.get("skipped", 0) + 1
                self._log.debug("{}: keeps {} (has a genre)", item, current)
                continue
            by_path.setdefault(os.fsdecode(item.path), []).append(item)
        for path, _digest, rec in tagging.predict_files(
                list(by_path), clf=clf, jobs=int(jobs or self.config["jobs"].get(int)), cache=cache, progress=False):
            for item in by_path[path]:
                current = item_genres(item)
                d = tagging.decide(current, rec, policy=settings.policy, min_confidence=settings.min_confidence,
                                   top_k=settings.top_k, labels=settings.labels)
                counts[d.action] = counts.get(d.action, 0) + 1
                if d.action == "error":
                    self._log.warning("{}: {}", item, d.reason)
                    continue
                if d.action == "write":
                    self._log.info("{}: {} -> {} ({:.0%})", item, "; ".join(current) or "-", "; ".join(d.values),
                                   d.confidence or 0.0)
                else:
                    self._log.info("{}: {} ({})", item, d.action, d.reason)
                if pretend:
                    continue
                ranked = sorted(rec["scores"].items(), key=lambda gs: -gs[1])
                item["genrekit_genre"] = ranked[0][0]
                item["genrekit_confidence"] = float(ranked[0][1])
                item["genrekit_scores"] = " ".join(f"{g}={s:.4f}" for g, s in ranked)
                if d.action == "write":
                    set_item_genres(item, d.values)
                _sync(item, write=write, counts=counts)
        n_tags = int(self.config["tags"].get(int))
        if n_tags > 0 and not pretend:
            self._store_tags(items, n_tags, write=write, jobs=jobs, counts=counts)
        return counts

    def _store_tags(self, items: list[Item], n: int, *, write: bool, jobs: int | None,
                    counts: dict[str, int]) -> None:
        from genrekit.library import musicnn

        cache = musicnn.summary_cache(enabled=self.config["cache"].get(bool))
        by_path: dict[str, list[Item]] = {}
        for item in items:
            by_path.setdefault(os.fsdecode(item.path), []).append(item)
        for path, _digest, summary, err in musicnn.summaries(list(by_path), jobs=int(jobs or self.config["jobs"].get(int)),
                                                             cache=cache, progress=False):
            if err or summary is None:
                counts["tag errors"] = counts.get("tag errors", 0) + len(by_path[path])
                self._log.warning("{}: {}", path, err)
                continue
            tags = ", ".join(t for t, _ in musicnn.top_tags(summary, n))
            for item in by_path[path]:
                item["genrekit_tags"] = tags
                _sync(item, write=write, counts=counts)

    # ------------------------------------------------------------------------------------ beets hooks
    def commands(self) -> list[ui.Subcommand]:
        cmd = ui.Subcommand("genrekit", help="classify genres from the audio with genrekit")
        p = cmd.parser
        p.add_option("--only-empty", dest="policy", action="store_const", const="only-empty",
                     help="set a genre only where there is none (default)")
        p.add_option("--overwrite", dest="policy", action="store_const", const="overwrite",
                     help="replace existing genres")
        p.add_option("--append", dest="policy", action="store_const", const="append",
                     help="add the predicted genres after the existing ones")
        p.add_option("--min-confidence", dest="min_confidence", type="float", default=None,
                     help="leave items whose best score is below P alone")
        p.add_option("--top-k", dest="top_k", type="int", default=None, help="store the K best genres")
        p.add_option("-j", "--jobs", dest="jobs", type="int", default=None, help="worker processes")
        p.add_option("-p", "--pretend", action="store_true", default=False, help="show what would change")

        def func(lib, opts, args):
            settings = self._settings(opts)
            items = list(lib.items(args))
            counts = self.classify(items, settings=settings, write=ui.should_write(), pretend=opts.pretend,
                                   jobs=opts.jobs)
            ui.print_("genrekit: " + (", ".join(f"{n} {a}" for a, n in sorted(counts.items())) or "no items"))
            failed = sum(counts.get(k, 0) for k in FAILED)
            if failed:  # beets exits 1 on a UserError: scripts see that some items failed
                raise ui.UserError(f"genrekit: {failed} items failed (see the warnings above); the others are done")

        cmd.func = func
        return [cmd]

    def imported(self, session, task) -> None:
        """Import stage: classify the new items (beets writes the files later, as for any field)."""
        self.classify(list(task.imported_items()), settings=self._settings(), write=False)
