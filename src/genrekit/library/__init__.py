"""Tools for people with music libraries (a face over :mod:`genrekit.predict` and
:mod:`genrekit.networks`; nothing in the core imports them):

- :mod:`~genrekit.library.tagging`: genres (and musicnn tags) written into the files' own tags, with
  policies, verification and resumable runs; :mod:`~genrekit.library.undo`: the journal and byte-exact undo;
- :mod:`~genrekit.library.playlists`: one M3U8 per genre;
- :mod:`~genrekit.library.similar`: nearest tracks by musicnn embedding, with an incremental index;
- :mod:`~genrekit.library.musicnn`: the per-file musicnn summaries the last two share (made of
  :mod:`genrekit.networks.musicnn.analysis`).

The beets plugin (``beetsplug/genrekit.py``) and ``genrekit tag / playlists / similar`` call these.
"""
