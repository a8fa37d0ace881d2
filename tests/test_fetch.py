"""`segunify fetch` against a local file:// mirror (no test needs the network)."""

import hashlib
import json

import pytest

from segunify import fetch as fetch_mod
from segunify.cli import main
from segunify.errors import SegunifyError


def test_manifest_matches_source_md_checksums():
    files = {f.dest: f for f in fetch_mod.manifest_files(["weights"])}
    assert files["weights/espnetv2_s2.0_cityscapes_1024x512.pth"].sha256 == (
        "a72d59699801c7ce8e8b89a53af9097eaaa60dc12180ecde86fd700ba1222fe8"
    )
    assert files["weights/espnetv2_s1.0_cityscapes_1024x512.pth"].size == 1_107_690
    counts = {g: len(fetch_mod.manifest_files([g])) for g in fetch_mod.load_manifest()}
    assert counts["camvid"] == 936 + 2 and counts["kitti-sample"] == 20


def test_fetch_from_mirror_verifies_and_resumes(tmp_path, weights_dir, capsys):
    mirror = f"file://{weights_dir.parent}"
    dest = tmp_path / "data"
    assert main(["fetch", "--dest", str(dest), "--only", "weights", "--mirror", mirror]) == 0
    got = dest / "weights/espnetv2_s2.0_cityscapes_1024x512.pth"
    assert hashlib.sha256(got.read_bytes()).hexdigest().startswith("a72d5969")
    assert "2 downloaded" in capsys.readouterr().out
    assert main(["fetch", "--dest", str(dest), "--only", "weights", "--mirror", mirror]) == 0
    assert "0 downloaded, 2 already present" in capsys.readouterr().out
    assert not list(dest.rglob("*.part"))


def test_checksum_mismatch_leaves_no_file(tmp_path, monkeypatch):
    src = tmp_path / "mirror" / "weights"
    src.mkdir(parents=True)
    (src / "x.bin").write_bytes(b"tampered")
    manifest = {
        "weights": {
            "repo": "r",
            "commit": "c",
            "license": "l",
            "files": [["https://example.invalid/x", "weights/x.bin", 8, "0" * 64]],
        }
    }
    monkeypatch.setattr(fetch_mod, "load_manifest", lambda: json.loads(json.dumps(manifest)))
    with pytest.raises(SegunifyError, match="checksum mismatch"):
        fetch_mod.fetch(tmp_path / "dest", ["weights"], mirror=f"file://{tmp_path / 'mirror'}")
    assert not (tmp_path / "dest/weights/x.bin").exists()
    assert not list((tmp_path / "dest").rglob("*.part"))


def test_unknown_group_and_missing_dest(monkeypatch, capsys):
    monkeypatch.delenv("SEGUNIFY_DATA", raising=False)
    assert main(["fetch", "--only", "nope", "--dest", "/tmp/x"]) == 1
    assert "unknown fetch group(s) ['nope']" in capsys.readouterr().err
    assert main(["fetch"]) == 1
    assert "give --dest DIR or set SEGUNIFY_DATA" in capsys.readouterr().err


def test_downloads_get_the_users_umask(tmp_path, weights_dir):
    """mkstemp made every downloaded file 0600, unreadable to a team sharing SEGUNIFY_DATA."""
    import os

    old = os.umask(0o022)
    try:
        fetch_mod.fetch(tmp_path, ["weights"], mirror=f"file://{weights_dir.parent}")
    finally:
        os.umask(old)
    modes = {p.stat().st_mode & 0o777 for p in (tmp_path / "weights").iterdir()}
    assert modes == {0o644}
