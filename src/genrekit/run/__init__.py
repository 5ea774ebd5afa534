"""The run layer: batch work over many files, on any engine, through the content cache, into any sink.

One loop serves ``genrekit features`` / ``predict`` / ``tags`` / ``embed``, the library tools, training
on audio and Python callers:

- :mod:`~genrekit.run.items`: the inputs (``find_audio``), one ``Result`` per input, ``ItemError``;
- :mod:`~genrekit.run.engines`: how a per-file task runs: ``LocalEngine`` (this process or a pool of
  workers, clamped to the work and the machine) or ``RayEngine``; "engine" means only this;
- :mod:`~genrekit.run.cached`: ``cached_map(task, items, cache)``, every cached batch's one loop;
- :mod:`~genrekit.run.sinks`: ``CsvSink``, ``TableSink``, ``JournalSink``, ``ParquetSink`` and ``write``;
  each knows what an earlier run finished, so a killed run, rerun, does only what is left;
- the tasks: :mod:`~genrekit.run.features` (feature rows), :mod:`~genrekit.run.predict` (prediction
  records and ``predict_settings``, the one resume key of prediction outputs), :mod:`~genrekit.run.networks`
  (tags and embeddings of any pretrained network: musicnn, mn04).

Importing this package imports none of them (the CLI stays fast; ``engines`` must load before numpy for
``limit_blas_threads`` to work).
"""
