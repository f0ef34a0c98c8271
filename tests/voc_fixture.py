"""A small PASCAL VOC 2007 tree in the real format, for the tests of :mod:`s3lib.data.voc`.

:func:`write_voc_fixture` writes ``root/VOCdevkit/VOC2007/`` as the VOC 2007 tars unpack it:
``JPEGImages/<id>.jpg``, ``Annotations/<id>.xml`` (with the real files' ``<source>``,
``<owner>`` and person ``<part>`` elements, whose own ``<name>`` s a reader must not take for
objects) and ``ImageSets/Main/{trainval,train,val,test}.txt`` plus the per-class lists
``<class>_<split>.txt``. What it wrote is also recorded in ``root/fixture_labels.json``, from
which :func:`voc_expected_targets` computes the targets without the reader under test.

Every object is a rectangle of its class's colour (:func:`class_colour`) over a grey noise
background, so a classifier can learn the labels from the pixels.

Imported by the tests as ``from voc_fixture import ...`` (``conftest.py`` puts ``tests/`` on
``sys.path``).
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

VOC_CLASSES = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
    "train", "tvmonitor",
)
"""Written out here, not imported from s3lib, so that the tests compare with an independent list."""
LABELS_FILE = "fixture_labels.json"
POSES = ("Frontal", "Left", "Rear", "Right", "Unspecified")

_OBJECT_XML = """\
\t<object>
\t\t<name>{name}</name>
\t\t<pose>{pose}</pose>
\t\t<truncated>{truncated}</truncated>
\t\t<difficult>{difficult}</difficult>
\t\t<bndbox>
\t\t\t<xmin>{xmin}</xmin>
\t\t\t<ymin>{ymin}</ymin>
\t\t\t<xmax>{xmax}</xmax>
\t\t\t<ymax>{ymax}</ymax>
\t\t</bndbox>
{part}\t</object>
"""
_PART_XML = """\
\t\t<part>
\t\t\t<name>head</name>
\t\t\t<bndbox>
\t\t\t\t<xmin>{xmin}</xmin>
\t\t\t\t<ymin>{ymin}</ymin>
\t\t\t\t<xmax>{xmax}</xmax>
\t\t\t\t<ymax>{ymax}</ymax>
\t\t\t</bndbox>
\t\t</part>
"""
_ANNOTATION_XML = """\
<annotation>
\t<folder>VOC2007</folder>
\t<filename>{id}.jpg</filename>
\t<source>
\t\t<database>The VOC2007 Database</database>
\t\t<annotation>PASCAL VOC2007</annotation>
\t\t<image>flickr</image>
\t\t<flickrid>{flickrid}</flickrid>
\t</source>
\t<owner>
\t\t<flickrid>s3lib-tests</flickrid>
\t\t<name>?</name>
\t</owner>
\t<size>
\t\t<width>{width}</width>
\t\t<height>{height}</height>
\t\t<depth>3</depth>
\t</size>
\t<segmented>0</segmented>
{objects}</annotation>
"""


def class_colour(k: int) -> tuple[int, int, int]:
    """The RGB colour of class ``k``'s rectangles: 20 hues around the colour wheel."""
    hsv = np.array([[[round(k * 180 / len(VOC_CLASSES)), 255, 230]]], dtype=np.uint8)
    return tuple(int(v) for v in cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0, 0])


def _plan(rng: np.random.Generator, n: int) -> list[list[tuple[int, bool]]]:
    """``[(class index, difficult), ...]`` per image of a split of ``n`` images.

    The classes are dealt round robin (two non-difficult ones per image while ``n < 20``), so
    with ``n >= 10`` every class is a positive somewhere. Image 0 also holds a class only as a
    difficult object (target 0), image 1 a positive class once more as difficult (target 1).
    """
    per_image = 1 if n >= len(VOC_CLASSES) else 2
    order = rng.permutation(len(VOC_CLASSES))
    plans = []
    for k in range(n):
        dealt = [int(c) for c in order[k * per_image:(k + 1) * per_image]]
        objects = [(c, False) for c in dealt] or [(int(rng.integers(20)), False)]
        if k == 0:
            others = [c for c in range(len(VOC_CLASSES)) if c not in dealt]
            objects.append((int(rng.choice(others)), True))
        elif k == 1:
            objects.append((objects[0][0], True))
        n_objects = int(rng.integers(1, 4))  # 1 to 3, or more where forced above
        while len(objects) < n_objects:
            objects.append((int(rng.integers(len(VOC_CLASSES))), bool(rng.random() < 0.4)))
        plans.append(objects)
    return plans


def _targets(objects: list[dict]) -> list[int]:
    """VOC's per-class labels of one image from the fixture's record of its objects."""
    labels = [-1] * len(VOC_CLASSES)
    for obj in objects:
        k = VOC_CLASSES.index(obj["name"])
        labels[k] = max(labels[k], 0 if obj["difficult"] else 1)
    return labels


def write_voc_fixture(root: Path, n_trainval: int = 12, n_test: int = 8,
                      size: tuple[int, int] = (64, 48), seed: int = 0) -> Path:
    """Write ``n_trainval + n_test`` images of ``size`` = (width, height) px with their
    annotations and lists under ``root/VOCdevkit/VOC2007/``; the same ``seed`` writes the same
    bytes. Returns ``root`` (what :class:`s3lib.data.voc.VOC2007Classification` accepts).

    Ids are numbered like VOC's (``"000001"``, ...), trainval and test interleaved; train and
    val split trainval in two halves. With ``n_trainval, n_test >= 10`` every class is a
    positive (a non-difficult object) of at least one trainval and one test image.
    """
    root = Path(root)
    voc = root / "VOCdevkit" / "VOC2007"
    for sub in ("JPEGImages", "Annotations", "ImageSets/Main"):
        (voc / sub).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    width, height = size
    total = n_trainval + n_test
    test_numbers = set((rng.permutation(total)[:n_test] + 1).tolist())
    splits = {"test": [f"{k:06d}" for k in range(1, total + 1) if k in test_numbers],
              "trainval": [f"{k:06d}" for k in range(1, total + 1) if k not in test_numbers]}
    val = set(rng.permutation(splits["trainval"])[:n_trainval // 2].tolist())
    splits["train"] = [i for i in splits["trainval"] if i not in val]
    splits["val"] = [i for i in splits["trainval"] if i in val]

    record: dict[str, list[dict]] = {}
    for split in ("trainval", "test"):
        for image_id, plan in zip(splits[split], _plan(rng, len(splits[split]))):
            rgb = rng.normal(128, 12, (height, width, 3)).clip(0, 255).astype(np.uint8)
            objects, xml_objects = [], []
            for k, difficult in plan:
                bw = int(rng.integers(width // 4, width // 2 + 1))
                bh = int(rng.integers(height // 4, height // 2 + 1))
                x0 = int(rng.integers(0, width - bw + 1))
                y0 = int(rng.integers(0, height - bh + 1))
                box = [x0 + 1, y0 + 1, x0 + bw, y0 + bh]  # VOC: 1-based, inclusive
                rgb[y0:y0 + bh, x0:x0 + bw] = class_colour(k)
                name = VOC_CLASSES[k]
                objects.append({"name": name, "difficult": int(difficult), "bndbox": box})
                part = (_PART_XML.format(xmin=box[0], ymin=box[1], xmax=box[2],
                                         ymax=box[1] + (box[3] - box[1]) // 3)
                        if name == "person" else "")
                xml_objects.append(_OBJECT_XML.format(
                    name=name, pose=POSES[int(rng.integers(len(POSES)))],
                    truncated=int(rng.integers(2)), difficult=int(difficult), xmin=box[0],
                    ymin=box[1], xmax=box[2], ymax=box[3], part=part))
            assert cv2.imwrite(str(voc / "JPEGImages" / f"{image_id}.jpg"),
                               cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
            (voc / "Annotations" / f"{image_id}.xml").write_text(_ANNOTATION_XML.format(
                id=image_id, flickrid=int(image_id) * 7919, width=width, height=height,
                objects="".join(xml_objects)))
            record[image_id] = objects

    main = voc / "ImageSets" / "Main"
    for split, ids in splits.items():
        (main / f"{split}.txt").write_text("".join(f"{i}\n" for i in ids))
        labels = [_targets(record[i]) for i in ids]
        for k, name in enumerate(VOC_CLASSES):  # VOC's own format: "000005 -1", "000007  1"
            (main / f"{name}_{split}.txt").write_text(
                "".join(f"{i} {row[k]:2d}\n" for i, row in zip(ids, labels)))
    (root / LABELS_FILE).write_text(json.dumps(
        {"seed": seed, "size": [width, height], "classes": list(VOC_CLASSES),
         "splits": splits, "objects": record}, indent=1))
    return root


def voc_expected_targets(root: Path, split: str) -> np.ndarray:
    """``(N, 20)`` float32 targets (1 / 0 / -1) of ``split`` of a tree written by
    :func:`write_voc_fixture` under ``root``, from its JSON record, rows in list order."""
    record = json.loads((Path(root) / LABELS_FILE).read_text())
    rows = [_targets(record["objects"][i]) for i in record["splits"][split]]
    return np.array(rows, dtype=np.float32).reshape(len(rows), len(VOC_CLASSES))


def read_class_lists(voc2007: Path, split: str, ids: list[str]) -> np.ndarray:
    """``(N, 20)`` float32 targets of ``ids`` from VOC's per-class lists
    ``ImageSets/Main/<class>_<split>.txt`` (real VOC ships them; so does the fixture)."""
    out = np.full((len(ids), len(VOC_CLASSES)), np.nan, dtype=np.float32)
    row = {i: r for r, i in enumerate(ids)}
    for k, name in enumerate(VOC_CLASSES):
        for line in (Path(voc2007) / "ImageSets" / "Main" / f"{name}_{split}.txt").open():
            if line.strip():
                image_id, label = line.split()
                out[row[image_id], k] = float(label)
    return out
