"""genrekit: tell which genre a piece of music belongs to, honestly measured.

Heavy modules (torch, sklearn) are imported lazily so that `import genrekit` and the CLI start fast.
"""

from __future__ import annotations

__version__ = "0.1.0"

GENRES: tuple[str, ...] = (
    "blues", "classical", "country", "disco", "hiphop", "jazz", "metal", "pop", "reggae", "rock",
)

__all__ = ["GENRES", "GenreClassifier", "__version__", "embed", "tags"]


def __getattr__(name: str):
    if name == "GenreClassifier":
        from genrekit.predict import GenreClassifier

        return GenreClassifier
    if name == "tags":  # genrekit.tags(paths, model=, top_k=, segments=, genres=, jobs=, ...) -> records
        from genrekit.run.networks import network_tags

        return network_tags
    if name == "embed":  # genrekit.embed(paths, model=, layers=, per_window=, jobs=, ...) -> DataFrame
        from genrekit.run.networks import network_embeddings

        return network_embeddings
    raise AttributeError(f"module 'genrekit' has no attribute {name!r}")
