"""`mivis prepare celeba` on a miniature CelebA layout (aligned 178x218 images + identity file)."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from mivis.data import DataError


@pytest.fixture
def mini_celeba(tmp_path):
    imgs = tmp_path / "img_align_celeba"
    imgs.mkdir()
    rng = np.random.default_rng(0)
    lines, n = [], 0
    for ident, count in (("7", 5), ("3", 4), ("12", 4), ("5", 2), ("9", 1)):
        for _ in range(count):
            n += 1
            name = f"{n:06d}.jpg"
            Image.fromarray(rng.integers(0, 255, (218, 178, 3), dtype=np.uint8)).save(imgs / name)
            lines.append(f"{name} {ident}")
    lines.append("999999.jpg 5")  # listed, not on disk: reported, not fatal
    (tmp_path / "identity_CelebA.txt").write_text("\n".join(lines) + "\n")
    return imgs, tmp_path / "identity_CelebA.txt"


def test_links_and_lists_by_image_count(mini_celeba, tmp_path, monkeypatch):
    from mivis.celeba import arrange_celeba
    from mivis.data import load_split
    imgs, ids = mini_celeba
    res = arrange_celeba(imgs, ids, tmp_path / "out", n_private=3, n_public=2)
    # most images first; the 4-image tie goes to the smaller id (3 before 12)
    assert (tmp_path / "out" / "private.txt").read_text().split() == ["7", "3", "12"]
    assert (tmp_path / "out" / "public.txt").read_text().split() == ["5", "9"]
    assert res["images"] == 16 and any("999999.jpg" in p for p in res["problems"])
    assert (tmp_path / "out" / "7" / "000001.jpg").is_symlink()
    monkeypatch.setenv("MIVIS_CACHE", str(tmp_path / "cache"))
    split = load_split({"dataset": "folder", "data_dir": str(tmp_path / "out"), "channels": 3, "image_size": 32,
                        "private_list": str(tmp_path / "out" / "private.txt"), "test_per_identity": 1,
                        "public_list": str(tmp_path / "out" / "public.txt")})
    assert split.private_names == ["7", "3", "12"] and split.image_shape == (3, 32, 32)


def test_crop_writes_centre_crops_and_refuses_non_empty_out(mini_celeba, tmp_path):
    from mivis.celeba import arrange_celeba
    imgs, ids = mini_celeba
    res = arrange_celeba(imgs, ids, tmp_path / "crop", n_private=2, n_public=1, crop=108, workers=1)
    f = tmp_path / "crop" / "3" / "000006.jpg"
    assert not f.is_symlink() and Image.open(f).size == (108, 108)
    assert res["images"] == 4 + 5 + 4
    with pytest.raises(DataError, match="not empty"):
        arrange_celeba(imgs, ids, tmp_path / "crop", n_private=2, n_public=1)
    assert Image.open(f).size == (108, 108)  # nothing overwritten


def test_bad_identity_file_and_too_few_identities(mini_celeba, tmp_path):
    from mivis.celeba import arrange_celeba
    imgs, ids = mini_celeba
    bad = tmp_path / "bad.txt"
    bad.write_text("000001.jpg\n")
    with pytest.raises(DataError, match="line 1"):
        arrange_celeba(imgs, bad, tmp_path / "o1")
    with pytest.raises(DataError, match="5 identities"):
        arrange_celeba(imgs, ids, tmp_path / "o2", n_private=5)


def test_recipe_grid_plans_on_an_arranged_folder(mini_celeba, tmp_path, monkeypatch):
    """docs/recipes/celeba-protocol.toml stays valid: every step validates once its paths point at data."""
    import tomllib
    from pathlib import Path
    from mivis.celeba import arrange_celeba
    from mivis.sweep import plan_sweep
    imgs, ids = mini_celeba
    out = tmp_path / "arranged"
    arrange_celeba(imgs, ids, out, n_private=3, n_public=2)
    monkeypatch.setenv("MIVIS_CACHE", str(tmp_path / "cache"))
    grid = tomllib.loads((Path(__file__).parent.parent / "docs/recipes/celeba-protocol.toml").read_text())
    data = grid["base"]["data"]
    data.update(data_dir=str(out), private_list=str(out / "private.txt"), public_list=str(out / "public.txt"),
                test_per_identity=1)
    grid["base"]["attack"]["identities"] = "0-2"  # the miniature has 3 private identities
    plan = plan_sweep(grid)
    assert len(plan.trials) == 6
    attack = next(s for s in plan.steps.values() if s.kind == "attack")
    assert attack.spec["params"]["identities"] == "0-2" and attack.spec["params"]["iterations"] == 1500
