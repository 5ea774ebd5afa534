"""Tools for people with music libraries: genre tags written safely into files (with undo), playlists
per genre, and the beets plugin's shared logic. Faces over :mod:`genrekit.predict`; nothing in the core
imports them."""
