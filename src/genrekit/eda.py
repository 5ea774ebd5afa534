"""Exploratory plots of a feature table (the notebooks' EDA, reproducible from the command line).

They describe the whole table, before any split: no accuracy figure appears here, and each title says
that it covers all rows.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from genrekit.errors import DatasetError

__all__ = ["write_eda"]


def _scope(table) -> str:
    n_tracks = np.unique(table.track_ids).size
    rows = len(table.y)
    what = f"{n_tracks} tracks" + (f", {rows} segments" if rows != n_tracks else "")
    return f"all {what} (no split)"


def plot_correlation(table, path: Path) -> None:
    """Correlation heatmap of the ``*_mean`` features (the tutorials' heatmap)."""
    from genrekit.reports import pyplot, save_figure

    plt = pyplot()
    idx = [i for i, c in enumerate(table.columns) if c.endswith("_mean")]
    if len(idx) < 2:
        raise DatasetError(f"{table.source}: fewer than two *_mean columns: nothing to correlate")
    names = [table.columns[i] for i in idx]
    corr = np.corrcoef(table.X[:, idx], rowvar=False)
    fig, ax = plt.subplots(figsize=(11, 9.5))
    im = ax.imshow(corr, cmap="coolwarm", vmin=-1, vmax=1)
    ax.set_xticks(range(len(names)), names, rotation=90, fontsize=6)
    ax.set_yticks(range(len(names)), names, fontsize=6)
    fig.colorbar(im, ax=ax, fraction=0.046, label="Pearson correlation")
    ax.set_title(f"correlation of the feature means, {_scope(table)}", fontsize=10)
    save_figure(fig, path)


def plot_tempo(table, path: Path) -> None:
    """Box plot of the tempo (BPM) column per genre."""
    from genrekit.reports import pyplot, save_figure

    if "tempo" not in table.columns:
        raise DatasetError(f"{table.source}: no 'tempo' column")
    plt = pyplot()
    tempo = table.X[:, table.columns.index("tempo")]
    y = np.asarray(table.y).astype(str)
    genres = sorted(set(y))
    fig, ax = plt.subplots(figsize=(10, 5))
    ax.boxplot([tempo[y == g] for g in genres], tick_labels=genres)
    ax.set_ylabel("tempo (BPM)")
    ax.tick_params(axis="x", rotation=45)
    ax.set_title(f"tempo per genre, {_scope(table)}", fontsize=10)
    save_figure(fig, path)


def plot_distributions(table, path: Path, *, n_cols: int = 6) -> None:
    """One small box plot per feature, one box per genre: which features separate which genres."""
    from genrekit.reports import pyplot, save_figure

    plt = pyplot()
    y = np.asarray(table.y).astype(str)
    genres = sorted(set(y))
    cmap = plt.get_cmap("tab10")
    n = len(table.columns)
    n_rows = int(np.ceil(n / n_cols))
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(3.0 * n_cols, 2.2 * n_rows), squeeze=False)
    for j, name in enumerate(table.columns):
        ax = axes[j // n_cols][j % n_cols]
        values = table.X[:, j]
        if name.endswith("_var") and np.all(values > 0):
            values = np.log10(values)
            name = f"log10 {name}"
        parts = ax.boxplot([values[y == g] for g in genres], patch_artist=True, showfliers=False, widths=0.7)
        for k, box in enumerate(parts["boxes"]):
            box.set_facecolor(cmap(k % 10))
        ax.set_title(name, fontsize=7)
        ax.set_xticks([])
        ax.tick_params(axis="y", labelsize=6)
    for j in range(n, n_rows * n_cols):
        axes[j // n_cols][j % n_cols].axis("off")
    handles = [plt.Rectangle((0, 0), 1, 1, color=cmap(k % 10)) for k in range(len(genres))]
    fig.legend(handles, genres, loc="upper center", ncol=len(genres), fontsize=8, bbox_to_anchor=(0.5, 1.0))
    fig.suptitle(f"feature distributions by genre, {_scope(table)}", fontsize=11, y=1.02)
    fig.tight_layout()
    save_figure(fig, path)


def write_eda(table, out: Path) -> list[Path]:
    """Write correlation.png, tempo_by_genre.png, distributions.png and summary.txt to ``out``."""
    from genrekit.store import atomic_write_bytes, claim_folder

    out = claim_folder(out, ours=lambda d: (d / "summary.txt").is_file() and (d / "correlation.png").is_file())
    written = []
    plot_correlation(table, out / "correlation.png")
    written.append(out / "correlation.png")
    if "tempo" in table.columns:
        plot_tempo(table, out / "tempo_by_genre.png")
        written.append(out / "tempo_by_genre.png")
    plot_distributions(table, out / "distributions.png")
    written.append(out / "distributions.png")
    y = np.asarray(table.y).astype(str)
    tids = np.asarray(table.track_ids).astype(str)
    lines = [f"table: {table.source}", f"scope: {_scope(table)}", f"columns: {len(table.columns)}", "",
             f"{'genre':>12} {'tracks':>7} {'rows':>6}"]
    for g in sorted(set(y)):
        lines.append(f"{g:>12} {np.unique(tids[y == g]).size:>7d} {(y == g).sum():>6d}")
    if "tempo" in table.columns:
        t = table.X[:, table.columns.index("tempo")]
        lines += ["", "median tempo (BPM) per genre:"]
        lines += [f"{g:>12} {np.median(t[y == g]):7.1f}" for g in sorted(set(y))]
    atomic_write_bytes(out / "summary.txt", ("\n".join(lines) + "\n").encode())
    written.append(out / "summary.txt")
    return written
