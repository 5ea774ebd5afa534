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


def _odd_library(root):
    """A FIFO, a link to /dev/zero, a broken link, a name that is not UTF-8 and one with an escape code."""
    import os
    import shutil

    good = write_audio(root / "ok.wav", tone(3.0))
    os.mkfifo(root / "p.flac")
    (root / "z.mp3").symlink_to("/dev/zero")
    (root / "broken.wav").symlink_to(root / "nowhere.wav")
    shutil.copy(good, os.fsencode(root) + b"/x\xff.wav")
    shutil.copy(good, root / "e\x1b[31mred.wav")
    return root


@pytest.mark.parametrize("command", [["info"], ["info", "--json"], ["predict"], ["predict", "--format", "json"]])
def test_walking_commands_skip_special_files_and_show_any_name(tmp_path, command):
    import os

    lib = _odd_library(tmp_path)
    env = dict(os.environ, PYTHONIOENCODING="utf-8:strict")  # a raw undecodable byte would crash the print
    r = subprocess.run([sys.executable, "-m", "genrekit", *command, str(lib)], capture_output=True, text=True,
                       timeout=120, env=env)
    out = r.stdout + r.stderr
    assert r.returncode == 1 and "Traceback" not in out, out
    assert "\x1b" not in out  # escape codes never reach the terminal
    for name, why in (("p.flac", "FIFO"), ("z.mp3", "character device"), ("broken.wav", "broken symbolic link")):
        assert f"{lib / name}: " in out and why in out
    if "--json" in command or "json" in command:
        data = json.loads(r.stdout)
        files = [e["file"] for e in data] if isinstance(data, list) else None
        if files is not None:  # predict: every file once, names lossless
            assert os.fsdecode(os.fsencode(str(lib)) + b"/x\xff.wav") in files
            assert sum(1 for e in data if not e["error"]) == 3
        else:
            assert data["tracks"] == 3 and len(data["errors"]) == 3
    elif command == ["predict"]:
        assert "x\\xff.wav" in out and "e\\x1b[31mred.wav" in out  # the terminal form of the names


def test_csv_output_keeps_a_non_utf8_name_as_its_own_bytes(tmp_path):
    lib = _odd_library(tmp_path / "lib")
    out = tmp_path / "p.csv"
    r = subprocess.run([sys.executable, "-m", "genrekit", "predict", str(lib), "--format", "csv", "--out", str(out)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    data = out.read_bytes()
    assert b"/x\xff.wav," in data  # the file's own name: it opens again
    assert b"e\x1b[31mred.wav," in data  # CSV is data, not a terminal: lossless
