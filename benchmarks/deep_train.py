"""Deep training cost on CPU: data preparation and seconds per epoch of each deep architecture.

    nice python benchmarks/deep_train.py [--data ../shared/data/gtzan] [--archs shortchunk,cnn] [--threads 2]

Builds the fault-filtered training slices once (image inversion is cached after the first run, so the
first call also times the cold cache), then times ``--epochs`` epochs of each architecture on them with
the default augmentation, and prints a Markdown table with the projected time of a 30-epoch run. The
machine's load average is printed too: on a shared CPU, contention changes these numbers a lot.
"""

from __future__ import annotations

import argparse
import os
import sys
import time


def main(argv: list[str] | None = None) -> int:
    import numpy as np
    import torch

    from genrekit import datasets, spectrogram, splits
    from genrekit.experiments import load_logmels, make_slices
    from genrekit.models.deep import DeepModel
    from genrekit.models.registry import model_names

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=None, help="GTZAN root (default ../shared/data/gtzan)")
    ap.add_argument("--archs", default="shortchunk,cnn-bn,cnn,tutorial,resnet")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    root = args.data or datasets.shared_root()
    if root is None:
        print("deep_train: no data (../shared/data/gtzan); pass --data", file=sys.stderr)
        return 1
    torch.set_num_threads(args.threads)
    t = time.time()
    data = load_logmels(root, progress=False)
    t_data = time.time() - t
    fold = splits.protocol_folds("fault-filtered", data.track_ids, data.labels)[0]
    pos = {tid: i for i, tid in enumerate(data.track_ids)}
    width = spectrogram.slice_frames()
    X, y, g = make_slices(data, [pos[t] for t in fold.train], width=width + 16, overlap=0.0)
    print(f"data: {len(data.track_ids)} tracks in {t_data:.1f} s; {len(X)} training slices; "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs; torch threads {args.threads}")
    print("\n| model | parameters | s/epoch | projected 30 epochs (min) |\n|---|---|---|---|")
    for arch in args.archs.split(","):
        if arch not in model_names("deep"):
            print(f"unknown model {arch}", file=sys.stderr)
            return 2
        m = DeepModel(arch, epochs=args.epochs, augment="default", input=spectrogram.input_description(),
                      input_frames=width, threads=args.threads, verbose=False)
        t = time.time()
        m.fit(X, y, groups=g)
        per = (time.time() - t) / args.epochs
        n = sum(int(np.prod(p.shape)) for p in m.net_.parameters())
        print(f"| {arch} | {n:,} | {per:.1f} | {30 * per / 60:.1f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
