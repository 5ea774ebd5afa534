"""`genrekit export`: a model as one ONNX file, for onnxruntime (`genrekit predict --model FILE.onnx`)."""

from __future__ import annotations

HELP = "export a deep model, a logistic musicnn head or a hybrid holding one to ONNX (for onnxruntime)"


def add_arguments(p) -> None:
    p.add_argument("--model", "-m", default=None,
                   help="a genrekit model file or a shipped model's name (default: the shipped genrekit-gtzan-blend)")
    p.add_argument("--out", "-o", required=True, help="where to write the .onnx file")


def run(args) -> int:
    import sys

    from genrekit.onnx_export import export
    from genrekit.predict import model_path

    out = export(model_path(args.model), args.out)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB); use it with: genrekit predict --model {out} PATH",
          file=sys.stderr)
    return 0
