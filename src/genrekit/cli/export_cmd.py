"""`genrekit export`: a deep model as ONNX, for onnxruntime (`genrekit predict --backend onnx`)."""

from __future__ import annotations

HELP = "export a deep or hybrid model to ONNX (for onnxruntime: predict --backend onnx)"


def add_arguments(p) -> None:
    p.add_argument("--model", "-m", default=None, help="genrekit deep model file (default: the shipped genrekit-gtzan-fast)")
    p.add_argument("--out", "-o", required=True, help="where to write the .onnx file")


def run(args) -> int:
    import sys

    from genrekit.onnx import export
    from genrekit.predict import default_model_path, model_path

    # the musicnn default has no ONNX export yet: without --model, export the fast shipped model
    out = export(model_path(args.model) if args.model else default_model_path("genrekit-gtzan-fast"), args.out)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB); use it with: genrekit predict --backend onnx --model {out} PATH",
          file=sys.stderr)
    return 0
