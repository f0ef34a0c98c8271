"""s3lib.data.sintel.SintelFlow on a small MPI-Sintel tree built here (24x32 frames, .flo flow).

Every pixel value is known: frame k of a scene is a colour image whose red, green and blue
planes hold different, known values, so a BGR/RGB mix-up, a wrong scale or an off-by-one in the
frame numbering shows.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from s3lib.data.sintel import SintelFlow
from s3lib.flow import write_flo

H, W = 24, 32
SCENES = {"alley_1": 4, "market_2": 3}  # scene -> number of frames (Sintel numbers from 1)


def frame_rgb(scene: str, number: int, pass_name: str) -> np.ndarray:
    """The (H, W, 3) uint8 RGB content of a frame: distinct, known values per channel."""
    rng = np.random.default_rng([len(scene), number, pass_name == "final"])
    rgb = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
    rgb[0, 0] = (250, 10, 100)  # a pixel whose channels are far apart
    return rgb


def flow_of(scene: str, number: int) -> np.ndarray:
    """(H, W, 2) float32 flow with x and y distinguishable."""
    ys, xs = np.mgrid[0:H, 0:W].astype(np.float32)
    return np.stack([xs * 0.1 + number, -ys * 0.2 - len(scene)], axis=-1)


def make_tree(base: Path, scenes=SCENES) -> Path:
    """``base/training/{clean,final,flow}/...`` as MPI-Sintel-complete.zip unpacks it."""
    for scene, n in scenes.items():
        for pass_name in ("clean", "final"):
            folder = base / "training" / pass_name / scene
            folder.mkdir(parents=True)
            for k in range(1, n + 1):
                bgr = cv2.cvtColor(frame_rgb(scene, k, pass_name), cv2.COLOR_RGB2BGR)
                assert cv2.imwrite(str(folder / f"frame_{k:04d}.png"), bgr)
        (base / "training" / "flow" / scene).mkdir(parents=True)
        for k in range(1, n):
            write_flo(base / "training" / "flow" / scene / f"frame_{k:04d}.flo", flow_of(scene, k))
    (base / "test" / "clean" / "ambush_1").mkdir(parents=True)  # the test split: no flow
    return base


@pytest.fixture
def tree(tmp_path) -> Path:
    return make_tree(tmp_path / "sintel")


@pytest.mark.parametrize("pass_name", ["clean", "final"])
def test_items_hold_the_frames_and_flow(tree, pass_name):
    ds = SintelFlow(tree, pass_name=pass_name)
    assert len(ds) == sum(n - 1 for n in SCENES.values())  # the last frame has no flow
    assert ds.scenes() == sorted(SCENES)
    seen = []
    for i in range(len(ds)):
        item = ds[i]
        scene, k = item["scene"], item["frame"]
        assert isinstance(scene, str) and isinstance(k, int)
        seen.append((scene, k))
        for key, number in (("image1", k), ("image2", k + 1)):
            img = item[key]
            assert img.shape == (3, H, W) and img.dtype == torch.float32
            assert 0.0 <= float(img.min()) and float(img.max()) <= 1.0
            expected = frame_rgb(scene, number, pass_name).transpose(2, 0, 1) / 255.0
            np.testing.assert_allclose(img.numpy(), expected, atol=1e-6)
        assert item["flow"].shape == (2, H, W) and item["flow"].dtype == torch.float32
        np.testing.assert_array_equal(item["flow"].numpy(), flow_of(scene, k).transpose(2, 0, 1))
    assert seen == [("alley_1", 1), ("alley_1", 2), ("alley_1", 3),
                    ("market_2", 1), ("market_2", 2)]


def test_rgb_order_and_scale_of_one_pixel(tree):
    item = SintelFlow(tree)[0]
    assert item["image1"][:, 0, 0].tolist() == pytest.approx([250 / 255, 10 / 255, 100 / 255])
    # flow channel 0 is x: it grows along the width
    assert float(item["flow"][0, 0, 5] - item["flow"][0, 0, 4]) == pytest.approx(0.1)
    assert float(item["flow"][1, 5, 0] - item["flow"][1, 4, 0]) == pytest.approx(-0.2)


def test_passes_differ_but_share_the_flow(tree):
    clean, final = SintelFlow(tree, pass_name="clean")[1], SintelFlow(tree, pass_name="final")[1]
    assert not torch.equal(clean["image1"], final["image1"])
    assert torch.equal(clean["flow"], final["flow"])


def test_scene_filter_and_data_loader(tree):
    ds = SintelFlow(tree, scenes=["market_2"])
    assert ds.scenes() == ["market_2"] and len(ds) == 2
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=2)))
    assert batch["image1"].shape == (2, 3, H, W) and batch["flow"].shape == (2, 2, H, W)
    assert batch["frame"].tolist() == [1, 2]
    with pytest.raises(ValueError, match="nope.*alley_1, market_2"):
        SintelFlow(tree, scenes=["nope"])


@pytest.mark.parametrize("folder", ["sintel", "MPI-Sintel-complete"])
def test_root_may_be_the_data_root(tmp_path, folder):
    make_tree(tmp_path / folder)
    ds = SintelFlow(tmp_path)
    assert ds.root == tmp_path / folder and len(ds) == 5


def test_missing_root_names_it_and_says_how_to_get_the_data(tmp_path):
    missing = tmp_path / "no" / "sintel"
    with pytest.raises(FileNotFoundError) as err:
        SintelFlow(missing)
    msg = str(err.value)
    assert str(missing) in msg and "s3 download sintel" in msg and "data/README.md" in msg
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="empty.*s3 download sintel"):
        SintelFlow(tmp_path / "empty")


def test_missing_flow_file_is_named(tree):
    gone = tree / "training" / "flow" / "alley_1" / "frame_0002.flo"
    gone.unlink()
    with pytest.raises(ValueError, match="frame_0002.flo") as err:
        SintelFlow(tree)
    assert "alley_1" in str(err.value)
    assert len(SintelFlow(tree, scenes=["market_2"])) == 2  # other scenes are still usable


def test_flow_without_a_frame_pair_is_named(tree):
    extra = tree / "training" / "flow" / "market_2" / "frame_0003.flo"  # frame 3 is the last
    write_flo(extra, flow_of("market_2", 3))
    with pytest.raises(ValueError, match="market_2.frame_0003.flo"):
        SintelFlow(tree)


def test_frames_without_any_flow_folder(tree):
    import shutil

    shutil.rmtree(tree / "training" / "flow")
    with pytest.raises(ValueError, match="flow"):
        SintelFlow(tree)


def test_flow_of_the_wrong_size_is_named(tree):
    bad = tree / "training" / "flow" / "alley_1" / "frame_0001.flo"
    write_flo(bad, np.zeros((H, W + 1, 2), np.float32))
    ds = SintelFlow(tree)
    with pytest.raises(ValueError, match="frame_0001.flo"):
        ds[0]


def test_bad_arguments(tree):
    with pytest.raises(ValueError, match="test"):
        SintelFlow(tree, split="test")
    with pytest.raises(ValueError, match="split"):
        SintelFlow(tree, split="val")
    with pytest.raises(ValueError, match="pass_name.*clean, final"):
        SintelFlow(tree, pass_name="albedo")
    with pytest.raises(IndexError):
        SintelFlow(tree)[5]


def test_sintel_pairs_resize_split_and_train(tmp_path):
    """MPI-Sintel as training data: the last scenes by name are held out, frames and flow are
    resized together (flow vectors scaled), and `s3 train video --data` accepts the folder."""
    from s3lib.data.pairs import is_sintel, load_pairs, sintel_pairs
    from s3lib.train import TrainConfig, train

    scenes = {"alley_1": 3, "bamboo_1": 3, "cave_2": 2, "market_2": 3}
    root = make_tree(tmp_path / "sintel", scenes)
    assert is_sintel(root) and is_sintel(tmp_path) and not is_sintel(tmp_path / "sintel" / "test")
    train_p = sintel_pairs(root, "train", size=(12, 16), heldout_scenes=2)
    held = sintel_pairs(root, "heldout", size=(12, 16), heldout_scenes=2)
    assert [s.split(":")[0] for s in train_p.source] == ["alley_1"] * 2 + ["bamboo_1"] * 2
    assert [s.split(":")[0] for s in held.source] == ["cave_2"] + ["market_2"] * 2
    assert train_p.images.shape == (4, 3, 12, 16) and train_p.flows.shape == (4, 2, 12, 16)
    # halving the picture halves the motion: mean of the 2x2 block, times 0.5
    full = torch.from_numpy(flow_of("alley_1", 1)).permute(2, 0, 1)
    expect = torch.nn.functional.avg_pool2d(full[None], 2)[0] * 0.5
    assert torch.allclose(train_p.flows[0], expect, atol=1e-5)
    with pytest.raises(ValueError, match="need more than 4"):
        sintel_pairs(root, "train", size=(12, 16), heldout_scenes=4)
    default = load_pairs(root, "heldout")  # the default: the last 3 scenes held out
    assert sorted({s.split(":")[0] for s in default.source}) == ["bamboo_1", "cave_2", "market_2"]
    config = TrainConfig(dataset="video", data=str(root), num_segments=2, steps=1, minutes=None,
                         batch=1, width=4)
    records = train(config, tmp_path / "run", progress=False)
    assert records[-1]["step"] == 1


def old_resized_stacking(root: Path, scenes: list[str], size: tuple[int, int]):
    """The reference: every pair of ``scenes`` read at full size, resized (area; flow scaled
    with the image), stacked, then centre-cropped to multiples of 4, as ``sintel_pairs`` did
    before it streamed."""
    ds = SintelFlow(root, scenes=scenes)
    items = [ds[i] for i in range(len(ds))]
    def resize(x):
        return torch.nn.functional.interpolate(x[None], size=size, mode="area")[0]

    scale = torch.tensor([size[1] / W, size[0] / H])[:, None, None]
    images = torch.stack([resize(it["image1"]) for it in items])
    flows = torch.stack([resize(it["flow"]) * scale for it in items])
    h4, w4 = size[0] // 4 * 4, size[1] // 4 * 4
    top, left = (size[0] - h4) // 2, (size[1] - w4) // 2
    cut = lambda x: x[..., top:top + h4, left:left + w4].contiguous()  # noqa: E731
    return cut(images), cut(flows), [f"{it['scene']}:{it['frame']}" for it in items]


@pytest.mark.parametrize("size", [(12, 16), (14, 18)])
def test_lazy_sintel_pairs_are_the_old_resized_stacking(tmp_path, size):
    from s3lib.data.pairs import FlowPairs, SintelPairs, load_pairs, sintel_pairs

    scenes = {"alley_1": 3, "bamboo_1": 3, "cave_2": 2, "market_2": 3}
    root = make_tree(tmp_path / "sintel", scenes)
    for split, chosen in (("train", ["alley_1", "bamboo_1"]), ("heldout", ["cave_2", "market_2"])):
        images, flows, source = old_resized_stacking(root, chosen, size)
        lazy = SintelPairs(root, split, size=size, heldout_scenes=2)
        assert isinstance(lazy, torch.utils.data.Dataset) and lazy.labels is None
        assert len(lazy) == len(images) and lazy.source == source
        assert lazy.size == (12, 16)  # 14x18 is cropped to multiples of 4
        for i in range(len(lazy)):
            item = lazy[i]
            assert set(item) == {"image", "flow", "source"} and item["source"] == source[i]
            assert torch.equal(item["image"], images[i]) and torch.equal(item["flow"], flows[i])
        mem = sintel_pairs(root, split, size=size, heldout_scenes=2)
        assert isinstance(mem, FlowPairs) and mem.source == source
        assert torch.equal(mem.images, images) and torch.equal(mem.flows, flows)
    assert isinstance(load_pairs(root, "train"), SintelPairs)
    assert "SintelPairs(4 pairs of 16x12" in repr(SintelPairs(root, size=size, heldout_scenes=2))


def test_training_on_lazy_sintel_equals_training_in_memory(tmp_path):
    from s3lib.data.pairs import SintelPairs, sintel_pairs
    from s3lib.train import TrainConfig, train

    root = make_tree(tmp_path / "sintel", {"alley_1": 3, "bamboo_1": 3, "cave_2": 2,
                                           "market_2": 3})
    config = TrainConfig(dataset="video", data=str(root), num_segments=2, steps=2, minutes=None,
                         batch=2, eval_every=1, width=4, levels=2)
    kw = {"size": (12, 16), "heldout_scenes": 2}
    lazy = train(config, tmp_path / "lazy", progress=False,
                 data=(SintelPairs(root, "train", **kw), SintelPairs(root, "heldout", **kw)))
    mem = train(config, tmp_path / "mem", progress=False,
                data=(sintel_pairs(root, "train", **kw), sintel_pairs(root, "heldout", **kw)))
    drop = lambda rs: [{k: v for k, v in r.items() if k != "elapsed"} for r in rs]  # noqa: E731
    assert drop(lazy) == drop(mem) and len(lazy) == 2


def test_read_can_leave_out_the_second_frame(tree):
    ds = SintelFlow(tree)
    full, first = ds[2], ds.read(2, image2=False)
    assert set(first) == {"image1", "flow", "scene", "frame"}
    assert torch.equal(full["image1"], first["image1"]) and torch.equal(full["flow"], first["flow"])
    assert ds.keys() == [("alley_1", 1), ("alley_1", 2), ("alley_1", 3), ("market_2", 1),
                         ("market_2", 2)]
