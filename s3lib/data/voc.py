"""PASCAL VOC 2007 (Everingham et al., IJCV 2010) as a torch ``Dataset`` for classification.

Layout read (as the two VOC 2007 tars unpack; ``s3 download voc2007`` puts them in
``data/voc2007/``, see ``data/README.md``)::

    <root>/VOCdevkit/VOC2007/JPEGImages/000005.jpg ...    the images
    <root>/VOCdevkit/VOC2007/Annotations/000005.xml ...   objects: name, difficult, box, ...
    <root>/VOCdevkit/VOC2007/ImageSets/Main/trainval.txt  image ids, one a line (also
                                                          train.txt, val.txt, test.txt)

Each image gets a target of 20 values, one per class of :data:`CLASSES`, with VOC's own
meaning (that of the ``ImageSets/Main/<class>_<split>.txt`` files): 1 = the class is in the
image, 0 = it is there only as "difficult" objects (ignored by the VOC metric), -1 = absent.
The annotations are parsed when the data set is built; images are read when asked for.

Explained in ``notebooks/07_voc07_transfer.ipynb``.
"""

from __future__ import annotations

import operator
import os
import xml.etree.ElementTree as ET
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

CLASSES = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
    "train", "tvmonitor",
)
"""The 20 VOC classes in the standard (alphabetical) order: column ``k`` of the targets."""
SPLITS = ("trainval", "train", "val", "test")

_CLASS_INDEX = {name: k for k, name in enumerate(CLASSES)}
_HOW_TO_GET = ("get it with `s3 download voc2007` (about 0.9 GB), or unpack the VOC 2007 "
               "trainval and test tars by hand into data/voc2007/ so that "
               "data/voc2007/VOCdevkit/VOC2007/JPEGImages/ exists; see data/README.md")
_EOI = b"\xff\xd9"  # the JPEG end-of-image marker, near the end of a complete file
_TAIL = 1024  # bytes searched for it: some writers pad a complete JPEG after the marker


def find_voc2007(root: str | os.PathLike) -> Path:
    """The ``VOC2007`` folder for a user-given ``root``.

    ``root`` may be the folder holding ``VOCdevkit/`` (e.g. ``data/voc2007``), ``VOCdevkit/``
    itself, or ``VOC2007/`` itself. A folder counts if it holds ``Annotations/`` or
    ``ImageSets/``.

    Raises:
        FileNotFoundError: no VOC 2007 tree there; the message names the folders looked at and
            says how to get the data.
    """
    root = Path(root).expanduser()
    candidates = [root / "VOCdevkit" / "VOC2007", root / "VOC2007", root]
    for cand in candidates:
        if (cand / "Annotations").is_dir() or (cand / "ImageSets").is_dir():
            return cand
    looked = ", ".join(str(c) for c in candidates)
    raise FileNotFoundError(f"{root}: no PASCAL VOC 2007 found (looked for Annotations/ in "
                            f"{looked}). VOC 2007 is not bundled with the course: {_HOW_TO_GET}")


def parse_annotation(path: Path) -> list[tuple[str, bool]]:
    """``[(class name, difficult), ...]``, one per ``<object>`` of a VOC annotation file.

    Raises:
        ValueError: the file is missing or not XML, or an object has no or an unknown name;
            the message names the file.
    """
    try:
        tree = ET.parse(path)
    except (OSError, ET.ParseError) as err:
        raise ValueError(f"{path}: cannot read the annotation ({err})") from err
    objects = []
    for obj in tree.getroot().findall("object"):
        # A direct child: <owner> and a person's <part>s have <name>s of their own.
        name = (obj.findtext("name") or "").strip()
        if name not in _CLASS_INDEX:
            raise ValueError(f"{path}: unknown class name {name!r}, expected one of {CLASSES}")
        difficult = (obj.findtext("difficult") or "0").strip()
        if difficult not in ("0", "1"):
            raise ValueError(f"{path}: <difficult> of {name!r} is {difficult!r}, not 0 or 1")
        objects.append((name, difficult == "1"))
    return objects


def objects_to_target(objects: list[tuple[str, bool]]) -> np.ndarray:
    """``(20,)`` float32: 1 = a non-difficult object of the class, 0 = only difficult ones,
    -1 = none."""
    target = np.full(len(CLASSES), -1.0, dtype=np.float32)
    for name, difficult in objects:
        k = _CLASS_INDEX[name]
        target[k] = max(target[k], 0.0 if difficult else 1.0)
    return target


class VOC2007Classification(Dataset):
    """The images of one VOC 2007 split with their 20-class targets.

    Item ``i`` is ``(image, target)``: ``image`` ``(3, H, W)`` float32 RGB in [0, 1] (sizes
    vary, at most 500 px a side), ``target`` ``(20,)`` float32 = ``targets[i]`` (1 / 0 / -1,
    see the module docstring).

    Attributes:
        root: the ``VOC2007`` folder.
        split: ``"trainval"`` (5011 images), ``"train"``, ``"val"`` or ``"test"`` (4952).
        ids: the image ids of the split, e.g. ``"000005"``, in the order of its list file.
        targets: ``(N, 20)`` float32, one row per id, columns in the order of :data:`CLASSES`.

    Raises:
        ValueError: an unknown ``split``; an annotation that is missing, broken or names an
            unknown class (the message names the file).
        FileNotFoundError: no VOC 2007 tree under ``root``, no ``JPEGImages/`` or no list file
            for ``split`` (the message names it and says how to get the data).
    """

    def __init__(self, root: str | os.PathLike, split: str = "trainval") -> None:
        if split not in SPLITS:
            raise ValueError(f"split={split!r}: expected one of {SPLITS}")
        self.root = find_voc2007(root)
        self.split = split
        for needed in (self.root / "JPEGImages", self.root / "ImageSets" / "Main" / f"{split}.txt"):
            if not needed.exists():
                raise FileNotFoundError(f"{needed}: not found, the VOC 2007 tree is incomplete; "
                                        f"{_HOW_TO_GET}")
        list_file = self.root / "ImageSets" / "Main" / f"{split}.txt"
        self.ids: list[str] = [line.strip() for line in list_file.read_text().splitlines()
                               if line.strip()]
        rows = [objects_to_target(parse_annotation(self.root / "Annotations" / f"{i}.xml"))
                for i in self.ids]
        self.targets = torch.from_numpy(np.stack(rows) if rows
                                        else np.zeros((0, len(CLASSES)), np.float32))

    def __len__(self) -> int:
        return len(self.ids)

    def _check(self, i: int) -> int:
        i = operator.index(i)
        if not 0 <= i < len(self.ids):
            raise IndexError(f"index {i} out of range for {len(self.ids)} images")
        return i

    def image_path(self, i: int) -> Path:
        """The JPEG file of item ``i``."""
        return self.root / "JPEGImages" / f"{self.ids[self._check(i)]}.jpg"

    def load_image_uint8(self, i: int) -> np.ndarray:
        """``(H, W, 3)`` uint8 RGB image of item ``i``.

        Raises:
            ValueError: the file is missing, not a JPEG OpenCV can decode, or truncated (it
                has no end-of-image marker in its last kilobyte; OpenCV would decode the part that is
                there and pad the rest with grey); the message names the file.
        """
        path = self.image_path(i)
        try:
            with open(path, "rb") as f:
                f.seek(max(os.fstat(f.fileno()).st_size - _TAIL, 0))
                tail = f.read()
        except OSError as err:
            raise ValueError(f"{path}: cannot read the image ({err})") from err
        if _EOI not in tail:
            raise ValueError(f"{path}: truncated or not a JPEG (no end-of-image marker)")
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if bgr is None:
            raise ValueError(f"{path}: OpenCV cannot decode the image")
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        image = torch.from_numpy(self.load_image_uint8(i)).permute(2, 0, 1)
        return image.float().div_(255.0).contiguous(), self.targets[i]

    def __repr__(self) -> str:
        return f"VOC2007Classification(split={self.split!r}, n={len(self)}, root='{self.root}')"
