"""s3lib.data.voc on a small VOC 2007 tree in the real format (tests/voc_fixture.py).

The expected targets come from the fixture's own record of what it wrote (and from VOC's
per-class lists), not from the XML the reader parses; images of known colour catch a BGR/RGB
mix-up; damaged files must raise errors that name them.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from s3lib.data.voc import CLASSES, VOC2007Classification, find_voc2007
from voc_fixture import (VOC_CLASSES, class_colour, read_class_lists, voc_expected_targets,
                         write_voc_fixture)

W, H = 64, 48


@pytest.fixture
def voc_root(tmp_path) -> Path:
    """A fresh fixture tree per test (20 JPEGs of 64x48: a few milliseconds)."""
    return write_voc_fixture(tmp_path / "voc2007")


def voc_dir(root: Path) -> Path:
    return root / "VOCdevkit" / "VOC2007"


def test_classes_are_the_20_voc_classes_in_order():
    assert CLASSES == ("aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat",
                       "chair", "cow", "diningtable", "dog", "horse", "motorbike", "person",
                       "pottedplant", "sheep", "sofa", "train", "tvmonitor")
    assert isinstance(CLASSES, tuple) and len(set(CLASSES)) == 20
    assert list(CLASSES) == sorted(CLASSES) and CLASSES == VOC_CLASSES


@pytest.mark.parametrize("form", ["data root", "VOCdevkit", "VOC2007"])
def test_three_root_forms(voc_root, form):
    given = {"data root": voc_root, "VOCdevkit": voc_root / "VOCdevkit",
             "VOC2007": voc_dir(voc_root)}[form]
    assert find_voc2007(given) == voc_dir(voc_root)
    assert find_voc2007(str(given)) == voc_dir(voc_root)
    ds = VOC2007Classification(given)
    assert ds.root == voc_dir(voc_root) and ds.split == "trainval" and len(ds) == 12


@pytest.mark.parametrize("missing", ["empty folder", "no such folder"])
def test_missing_tree(tmp_path, missing):
    root = tmp_path if missing == "empty folder" else tmp_path / "nowhere"
    for call in (find_voc2007, VOC2007Classification):
        with pytest.raises(FileNotFoundError, match=re.escape(str(root))) as err:
            call(root)
        assert "s3 download voc2007" in str(err.value) and "data/README.md" in str(err.value)


@pytest.mark.parametrize("split", ["trainval", "train", "val", "test"])
def test_targets_match_the_fixtures_record(voc_root, split):
    ds = VOC2007Classification(voc_root, split)
    expected = voc_expected_targets(voc_root, split)
    assert ds.targets.dtype == torch.float32 and ds.targets.shape == (len(ds), 20)
    np.testing.assert_array_equal(ds.targets.numpy(), expected)
    # ... and VOC's own per-class lists, which the fixture writes as real VOC ships them
    np.testing.assert_array_equal(ds.targets.numpy(), read_class_lists(ds.root, split, ds.ids))
    assert ds.ids == (ds.root / "ImageSets" / "Main" / f"{split}.txt").read_text().split()
    assert all(re.fullmatch(r"\d{6}", i) for i in ds.ids)


def test_target_semantics(voc_root):
    """1 = a non-difficult object, 0 = only difficult ones, -1 = none; the fixture's image 0
    of each split has a difficult-only class, image 1 a positive class also as difficult."""
    for split in ("trainval", "test"):
        ds = VOC2007Classification(voc_root, split)
        assert set(ds.targets.unique().tolist()) == {-1.0, 0.0, 1.0}
        xml0 = (ds.root / "Annotations" / f"{ds.ids[0]}.xml").read_text()
        difficult_only = [k for k, name in enumerate(CLASSES)
                          if ds.targets[0, k] == 0]
        assert difficult_only and all(f"<name>{CLASSES[k]}</name>" in xml0 for k in difficult_only)
        xml1 = (ds.root / "Annotations" / f"{ds.ids[1]}.xml").read_text()
        both = [n for n in CLASSES if xml1.count(f"<name>{n}</name>") >= 2]
        assert both and all(ds.targets[1, CLASSES.index(n)] == 1 for n in both)


def test_every_class_is_a_positive_in_trainval_and_test(tmp_path):
    root = write_voc_fixture(tmp_path, n_trainval=10, n_test=10, seed=3)
    for split in ("trainval", "test"):
        assert (VOC2007Classification(root, split).targets == 1).any(dim=0).all()
    ds = VOC2007Classification(root, "trainval")
    assert ds.ids == sorted(VOC2007Classification(root, "train").ids
                            + VOC2007Classification(root, "val").ids)


def test_fixture_is_deterministic(tmp_path):
    a, b, c = (write_voc_fixture(tmp_path / name, seed=s) for name, s in
               (("a", 0), ("b", 0), ("c", 1)))
    files = sorted(p.relative_to(voc_dir(a)) for p in voc_dir(a).rglob("*") if p.is_file())
    assert len(files) == 20 * 2 + 4 + 4 * 20  # images, annotations, split lists, class lists
    assert all((voc_dir(a) / f).read_bytes() == (voc_dir(b) / f).read_bytes() for f in files)
    assert (voc_expected_targets(a, "trainval") != voc_expected_targets(c, "trainval")).any()


def test_items(voc_root):
    ds = VOC2007Classification(voc_root, "test")
    for i in (0, len(ds) - 1, np.int64(2), torch.tensor(3)):
        image, target = ds[i]
        assert image.shape == (3, H, W) and image.dtype == torch.float32
        assert 0 <= image.min() and image.max() <= 1 and image.max() > 0.5
        assert torch.equal(target, ds.targets[int(i)])
        assert ds.image_path(i) == ds.root / "JPEGImages" / f"{ds.ids[int(i)]}.jpg"
        rgb = ds.load_image_uint8(i)
        assert rgb.shape == (H, W, 3) and rgb.dtype == np.uint8
        torch.testing.assert_close(image, torch.from_numpy(rgb).permute(2, 0, 1) / 255.0)
    images, targets = next(iter(DataLoader(ds, batch_size=4)))
    assert images.shape == (4, 3, H, W) and torch.equal(targets, ds.targets[:4])


def test_pixels_show_the_labels(voc_root):
    """Each image's last drawn object is a rectangle of its class colour, in RGB: the labels
    are in the pixels, so a classifier could learn them."""
    record = json.loads((voc_root / "fixture_labels.json").read_text())
    ds = VOC2007Classification(voc_root, "trainval")
    for i, image_id in enumerate(ds.ids):
        last = record["objects"][image_id][-1]
        x0, y0, x1, y1 = last["bndbox"]  # 1-based, inclusive
        box = ds.load_image_uint8(i)[y0 - 1:y1, x0 - 1:x1].astype(int)
        colour = np.array(class_colour(CLASSES.index(last["name"])))
        assert np.median(np.abs(box - colour).max(axis=-1)) < 30, (image_id, last)


def test_rgb_order(voc_root):
    ds = VOC2007Classification(voc_root)
    red_bgr = np.zeros((H, W, 3), np.uint8)
    red_bgr[..., 2] = 255
    assert cv2.imwrite(str(ds.image_path(0)), red_bgr)
    image, _ = ds[0]
    assert image[0].min() > 0.9 and image[1:].max() < 0.1
    assert (ds.load_image_uint8(0)[..., 0] > 230).all()


def test_broken_xml(voc_root):
    xml = voc_dir(voc_root) / "Annotations" / f"{_ids(voc_root, 'trainval')[0]}.xml"
    xml.write_text("<annotation><object><name>cat</name>")
    with pytest.raises(ValueError, match=re.escape(str(xml))):
        VOC2007Classification(voc_root, "trainval")


def test_missing_xml(voc_root):
    image_id = _ids(voc_root, "test")[2]
    xml = voc_dir(voc_root) / "Annotations" / f"{image_id}.xml"
    xml.unlink()
    VOC2007Classification(voc_root, "trainval")  # other splits do not need it
    with pytest.raises(ValueError, match=re.escape(str(xml))):
        VOC2007Classification(voc_root, "test")


def test_unknown_class_name(voc_root):
    image_id = _ids(voc_root, "val")[0]
    xml = voc_dir(voc_root) / "Annotations" / f"{image_id}.xml"
    text = xml.read_text()
    name = re.search(r"<object>\s*<name>(\w+)</name>", text).group(1)
    xml.write_text(text.replace(f"<name>{name}</name>", "<name>unicorn</name>", 1))
    with pytest.raises(ValueError, match=re.escape(str(xml)) + ".*unicorn"):
        VOC2007Classification(voc_root, "val")


@pytest.mark.parametrize("damage", ["garbage", "truncated", "missing"])
def test_broken_jpeg(voc_root, damage):
    ds = VOC2007Classification(voc_root, "test")
    path = ds.image_path(3)
    data = path.read_bytes()
    if damage == "garbage":
        path.write_bytes(np.random.default_rng(0).integers(0, 256, 2000, np.uint8).tobytes())
    elif damage == "truncated":
        # cv2.imread decodes this half (greying the rest) instead of returning None
        path.write_bytes(data[:len(data) // 2])
    else:
        path.unlink()
    for read in (ds.__getitem__, ds.load_image_uint8):
        with pytest.raises(ValueError, match=re.escape(str(path))):
            read(3)
    ds[2]  # the other images still read


def test_garbage_ending_like_a_jpeg(voc_root):
    """Passes the end-marker check; OpenCV's None must still become a ValueError."""
    ds = VOC2007Classification(voc_root, "test")
    ds.image_path(0).write_bytes(b"not a jpeg at all" * 10 + b"\xff\xd9")
    with pytest.raises(ValueError, match=re.escape(str(ds.image_path(0)))):
        ds[0]


def test_missing_jpegimages_folder(voc_root):
    folder = voc_dir(voc_root) / "JPEGImages"
    for f in folder.iterdir():
        f.unlink()
    folder.rmdir()
    with pytest.raises(FileNotFoundError, match=re.escape(str(folder)) + ".*s3 download voc2007"):
        VOC2007Classification(voc_root)


def test_missing_split_list(voc_root):
    """As after unpacking only the trainval tar: no ImageSets/Main/test.txt."""
    list_file = voc_dir(voc_root) / "ImageSets" / "Main" / "test.txt"
    list_file.unlink()
    VOC2007Classification(voc_root, "trainval")
    with pytest.raises(FileNotFoundError,
                       match=re.escape(str(list_file)) + ".*s3 download voc2007"):
        VOC2007Classification(voc_root, "test")


@pytest.mark.parametrize("split", ["training", "Test", "", "trainval "])
def test_bad_split(voc_root, split):
    with pytest.raises(ValueError, match=r"split=.*trainval.*train.*val.*test"):
        VOC2007Classification(voc_root, split)


def test_index_errors(voc_root):
    ds = VOC2007Classification(voc_root, "val")
    n = len(ds)
    for i in (-1, -n, n, n + 5):
        with pytest.raises(IndexError):
            ds[i]
        with pytest.raises(IndexError):
            ds.image_path(i)
        with pytest.raises(IndexError):
            ds.load_image_uint8(i)
    with pytest.raises(TypeError):
        ds[1.0]
    assert len(list(ds)) == n  # iteration stops at the IndexError


def test_repr(voc_root):
    text = repr(VOC2007Classification(voc_root, "test"))
    assert "VOC2007Classification" in text and "'test'" in text and "8" in text
    assert len(text) < 200 and "\n" not in text


def _ids(root: Path, split: str) -> list[str]:
    return (voc_dir(root) / "ImageSets" / "Main" / f"{split}.txt").read_text().split()
