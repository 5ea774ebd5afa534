"""Partitioned Parquet output: parts + manifest written atomically, resume, changed and failed inputs."""

from __future__ import annotations

import json
import os

import pytest

pytest.importorskip("pyarrow", reason="Parquet output needs pyarrow (pip install 'genrekit[ray]')")

from genrekit.parquet_out import (  # noqa: E402
    OutputError,
    PartitionedOutput,
    is_dataset_target,
    predict_row,
    read_dataset,
    read_manifest,
)


def _inputs(tmp_path, n=5):
    paths = []
    for i in range(n):
        p = tmp_path / "in" / f"f{i}.wav"
        p.parent.mkdir(exist_ok=True)
        p.write_bytes(b"x" * (10 + i))
        paths.append(str(p))
    return paths


def _open(tmp_path, **kw):
    return PartitionedOutput(tmp_path / "out", kind="test", settings={"a": 1}, **kw).open()


def test_parts_manifest_and_pending(tmp_path):
    paths = _inputs(tmp_path)
    out = _open(tmp_path, part_size=2)
    assert out.pending(paths) == paths
    for i, p in enumerate(paths):
        if i == 2:
            out.add(p, error=f"{p}: broken")
        else:
            out.add(p, [{"v": float(i)}, {"v": float(i) + 0.5}])
    out.close()
    m = read_manifest(tmp_path / "out")
    assert [p["file"] for p in m["parts"]] == ["part-00000.parquet", "part-00001.parquet", "part-00002.parquet"]
    assert sorted(os.listdir(tmp_path / "out")) == ["_manifest.json", *[p["file"] for p in m["parts"]]]
    assert len(m["done"]) == 4 and list(m["failed"].values())[0]["error"].endswith("broken")
    t = read_dataset(tmp_path / "out").to_pandas()
    assert list(t.columns) == ["input", "v"] and len(t) == 8
    assert list(t["input"]).count(paths[0]) == 2 and paths[2] not in set(t["input"])
    import pandas as pd

    assert pd.read_parquet(tmp_path / "out").equals(t)  # the manifest does not get in pandas' way
    # a rerun skips the finished inputs and retries the failed one
    again = _open(tmp_path, part_size=2)
    assert again.pending(paths) == [paths[2]]
    again.add(paths[2], [{"v": 2.0}])
    again.close()
    m = read_manifest(tmp_path / "out")
    assert len(m["done"]) == 5 and not m["failed"]


def test_kill_between_part_and_manifest_loses_nothing_finished(tmp_path, monkeypatch):
    paths = _inputs(tmp_path, 4)
    out = _open(tmp_path, part_size=2)
    out.add(paths[0], [{"v": 0.0}])
    out.add(paths[1], [{"v": 1.0}])  # part 0 + manifest written

    def killed(self):
        raise KeyboardInterrupt

    monkeypatch.setattr(PartitionedOutput, "_write_manifest", killed)
    out.add(paths[2], [{"v": 2.0}])
    with pytest.raises(KeyboardInterrupt):
        out.add(paths[3], [{"v": 3.0}])  # part 1 renamed into place, manifest not updated
    monkeypatch.undo()
    assert (tmp_path / "out" / "part-00001.parquet").exists()
    (tmp_path / "out" / ".part-00002.parquet.abc.tmp").write_bytes(b"torn")
    again = _open(tmp_path, part_size=2)
    assert sorted(os.listdir(tmp_path / "out")) == ["_manifest.json", "part-00000.parquet"]  # orphans gone
    assert again.pending(paths) == paths[2:]
    assert sorted(read_dataset(tmp_path / "out").to_pandas()["v"]) == [0.0, 1.0]


def test_changed_input_is_redone_and_its_old_rows_dropped(tmp_path):
    paths = _inputs(tmp_path, 3)
    out = _open(tmp_path, part_size=10)
    for i, p in enumerate(paths):
        out.add(p, [{"v": float(i)}])
    out.close()
    with open(paths[1], "ab") as f:
        f.write(b"more")  # the file changed since it was done
    again = _open(tmp_path)
    assert again.pending(paths) == [paths[1]]
    assert sorted(read_dataset(tmp_path / "out").to_pandas()["v"]) == [0.0, 2.0]
    again.add(paths[1], [{"v": 10.0}])
    again.close()
    t = read_dataset(tmp_path / "out").to_pandas()
    assert sorted(t["v"]) == [0.0, 2.0, 10.0] and list(t["input"]).count(paths[1]) == 1


def test_refuses_other_settings_foreign_folders_and_files(tmp_path):
    _open(tmp_path).close()
    with pytest.raises(OutputError, match="other settings"):
        PartitionedOutput(tmp_path / "out", kind="test", settings={"a": 2}).open()
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "notes.txt").write_text("mine")
    with pytest.raises(OutputError, match="not empty"):
        PartitionedOutput(tmp_path / "foreign", kind="test", settings={}).open()
    (tmp_path / "afile").write_text("x")
    with pytest.raises(OutputError, match="not a directory"):
        PartitionedOutput(tmp_path / "afile", kind="test", settings={}).open()
    (tmp_path / "out" / "_manifest.json").write_text("{torn")
    with pytest.raises(OutputError, match="unreadable manifest"):
        _open(tmp_path)


def test_dataset_target_and_predict_row(tmp_path):
    assert is_dataset_target(f"{tmp_path}/new/") and is_dataset_target(tmp_path)
    assert not is_dataset_target(tmp_path / "x.json") and not is_dataset_target(None)
    rec = {"file": "a.wav", "genre": "rock", "scores": {"rock": 0.7, "blues": 0.3}, "top": [["rock", 0.7]],
           "duration_s": 30.0, "segments": [{"start": 0.0, "end": 3.0, "genre": "rock", "scores": {}}], "error": None}
    row = predict_row(rec)
    assert list(row) == ["file", "genre", "duration_s", "score_blues", "score_rock", "top", "segments_json"]
    assert row["top"] == ["rock"] and json.loads(row["segments_json"]) == rec["segments"]


def test_features_cli_writes_parquet_parts_matching_the_csv(tmp_path, synth_dataset):
    """`genrekit features --out DIR/` gives the CSV's rows as Parquet parts, and a rerun skips them."""
    import pandas as pd

    from genrekit.cli import main
    from genrekit.parquet_out import read_manifest

    csv = tmp_path / "f.csv"
    assert main(["features", str(synth_dataset), "--out", str(csv), "--quiet", "--jobs", "1", "--no-cache"]) == 0
    out = tmp_path / "parts"
    args = ["features", str(synth_dataset), "--out", f"{out}/", "--quiet", "--jobs", "1", "--part-size", "4"]
    assert main(args) == 0
    table = pd.read_parquet(out).sort_values("filename").reset_index(drop=True)
    ref = pd.read_csv(csv).sort_values("filename").reset_index(drop=True)
    assert list(table["filename"]) == list(ref["filename"]) and len(table) == 6
    for col in ("tempo", "mfcc1_mean", "rms_var"):
        assert table[col].to_numpy() == pytest.approx(ref[col].to_numpy(), rel=1e-12)
    manifest = read_manifest(out)
    assert len(manifest["done"]) == 6 and len(manifest["parts"]) == 2 and not manifest["failed"]
    assert main(args) == 0  # nothing left to do: the parts stay as they were
    assert read_manifest(out)["parts"] == manifest["parts"]
