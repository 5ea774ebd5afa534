import json
import subprocess
import sys

import pytest

from genrekit.cli import main
from helpers import tone, write_audio


def test_version_and_help(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0 and "genrekit" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "info" in capsys.readouterr().out


def test_usage_error_exits_2():
    r = subprocess.run([sys.executable, "-m", "genrekit", "info"], capture_output=True, text=True)
    assert r.returncode == 2 and "required" in r.stderr


def test_info_lists_exactly_the_bad_files(tmp_path, synth_dataset, capsys):
    bad = synth_dataset / "metal"
    (bad / "zero.wav").write_bytes(b"")
    (bad / "notes.mp3").write_text("not audio at all\n" * 40)
    good = write_audio(tmp_path / "x.flac", tone(5.0))
    data = good.read_bytes()
    (bad / "trunc.flac").write_bytes(data[: len(data) // 2])
    rc = main(["info", str(synth_dataset), "--json"])
    out = json.loads(capsys.readouterr().out)
    assert rc == 1
    assert out["tracks"] == 6 and out["genres"] == {"blues": 3, "metal": 3}
    assert sorted(e["file"].rsplit("/", 1)[1] for e in out["errors"]) == ["notes.mp3", "trunc.flac", "zero.wav"]
    assert out["duration_s"] == pytest.approx(24.0, abs=0.1)


def test_info_human_output(synth_dataset, capsys):
    assert main(["info", str(synth_dataset)]) == 0
    text = capsys.readouterr().out
    assert "tracks: 6" in text and "blues" in text and "22050 Hz" in text


@pytest.mark.shared
def test_info_shared_audio(gtzan, capsys):
    assert main(["info", str(gtzan / "audio"), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["tracks"] == 124 and len(out["genres"]) == 10 and out["errors"] == []
    assert out["formats"] == {"au": 10, "flac": 113, "mp3": 1}
