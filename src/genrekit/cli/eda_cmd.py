"""`genrekit eda`: look at a feature table before modelling it."""

from __future__ import annotations

HELP = "exploratory plots of a feature CSV: correlations, tempo per genre, feature distributions"
DESCRIPTION = (
    "Writes to --out: correlation.png (correlation heatmap of the *_mean features), tempo_by_genre.png (BPM box "
    "plot per genre), distributions.png (each feature's distribution per genre, as box plots) and summary.txt "
    "(rows and tracks per genre). These describe the whole table: no split, no protocol."
)


def add_arguments(p) -> None:
    p.add_argument("--data", "-d", required=True, help="feature CSV (e.g. ../shared/data/gtzan/features_30_sec.csv)")
    p.add_argument("--out", "-o", required=True, help="folder for the plots")


def run(args) -> int:
    from pathlib import Path

    from genrekit import datasets
    from genrekit.eda import write_eda

    table = datasets.load_feature_table(args.data)
    written = write_eda(table, Path(args.out))
    for path in written:
        print(path)
    return 0
