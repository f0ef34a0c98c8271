"""The video explorer of notebook 06 without a browser: move controls, check what was redrawn.

A small two-shot clip (a textured square sliding over a background, then the same scene much
darker: a hard cut) is cached with prepare_video; two small untrained networks stand in for
the trained ones. The numbers in the label are checked against s3lib.losses on masks and speed
bands built here independently of the widget module.
"""

import math
import re

import cv2
import numpy as np
import pytest
import torch

from s3lib.data.video import load_cache, prepare_video
from s3lib.losses import affine_motion_loss, entropy_motion_loss
from s3lib.models import SegmentationNet, save_checkpoint
from s3lib.widgets.video import VideoExplorer, frame_status, video_explorer

PNG = b"\x89PNG\r\n\x1a\n"
CUT = 12  # the first frame of the second shot


@pytest.fixture(scope="module")
def two_shot_cache(tmp_path_factory):
    rng = np.random.default_rng(3)
    bg = cv2.GaussianBlur((rng.random((80, 96, 3)) * 255).astype(np.float32), (0, 0), 1.0)
    bg = bg.clip(0, 255).astype(np.uint8)
    fg = (rng.random((12, 12, 3)) * 255).astype(np.uint8)
    frames = []
    for t in range(22):
        f = bg[t:t + 32, 10:58].copy()
        f[10:22, 4 + 2 * t % 30:16 + 2 * t % 30] = fg
        frames.append(f if t < CUT else (f // 5))  # second shot: much darker
    path = tmp_path_factory.mktemp("clip") / "twoshot.avi"
    out = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (48, 32))
    for f in frames:
        out.write(cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    out.release()
    cache = load_cache(prepare_video(path, tmp_path_factory.mktemp("cache") / "twoshot",
                                     progress=False))
    assert cache.cuts == [CUT], cache.cuts
    return cache


@pytest.fixture(scope="module")
def nets():
    torch.manual_seed(0)
    return {"net A": SegmentationNet(3, width=4).eval(),
            "net B": SegmentationNet(3, width=4).eval()}


@pytest.fixture(scope="module")
def explorer(two_shot_cache, nets):
    return video_explorer(two_shot_cache, nets, bins=16, segments=3)


def reference(cache, nets, t, bins, segments, max_speed=None):
    """Both losses of every segmentation of frame t, computed without the widget module
    (``max_speed``: the entropy loss's last bin; ``None``: the frame's largest speed)."""
    p = int(np.nonzero(cache.pairs[:, 0] == t)[0][0])
    flow = torch.from_numpy(np.asarray(cache.flows[p], np.float32)).permute(2, 0, 1)[None]
    image = torch.from_numpy(np.array(cache.frames[t])).permute(2, 0, 1)[None].float() / 255
    segs = {}
    for name, net in nets.items():
        with torch.no_grad():
            lab = net(image).argmax(1)[0]
        segs[name] = torch.stack([(lab == k).float() for k in range(3)])[None]
    speed = flow[0].norm(dim=0).numpy()
    cuts = np.quantile(speed.astype(np.float64), np.arange(1, segments) / segments)
    band = np.searchsorted(cuts, speed, side="right")
    segs[f"{segments} speed bands"] = torch.stack(
        [torch.from_numpy(band == k).float() for k in range(segments)])[None]
    segs["one segment"] = torch.ones(1, 1, *speed.shape)
    return ({k: float(entropy_motion_loss(m, flow, bins=bins, max_magnitude=max_speed))
             for k, m in segs.items()},
            {k: float(affine_motion_loss(m, flow)) for k, m in segs.items()})


def label_numbers(text, which):
    part = re.search(rf"{which} loss \((?:nats|px)\) ([^;]*)", text).group(1)
    return {m.group(1): float(m.group(2))
            for m in re.finditer(r"([A-Za-z0-9 ]+?) (-?\d+\.\d+)(?:, |$)", part)}


def test_initial_state_is_the_first_held_out_frame(explorer, two_shot_cache):
    assert isinstance(explorer, VideoExplorer)
    assert explorer.image.value[:8] == PNG
    # shot 0 = frames 0..11: the last round(0.2 * 12) = 2 frames are held out
    assert explorer.frame.value == 10
    assert explorer.info.value.startswith("frame 10, bins 16, segments 3: held-out;")
    assert explorer.widget.children[-1] is explorer.info
    assert explorer.frame.max == len(two_shot_cache.frames) - 1


@pytest.mark.parametrize("frame, bins, segments", [(10, 16, 3), (10, 32, 5), (3, 8, 1),
                                                    (19, 40, 4)])
def test_label_numbers_match_the_losses(explorer, two_shot_cache, nets, frame, bins, segments):
    line = explorer.show(bins=bins, segments=segments, frame=frame)
    ent, aff = reference(two_shot_cache, nets, frame, bins, segments)
    shown_e, shown_a = label_numbers(line, "entropy"), label_numbers(line, "affine")
    assert list(shown_e) == list(ent) and list(shown_a) == list(aff)
    for name in ent:
        assert shown_e[name] == pytest.approx(ent[name], abs=6e-5), name
        assert shown_a[name] == pytest.approx(aff[name], abs=6e-5), name
        assert explorer.last.entropy[name] == pytest.approx(ent[name], rel=1e-5), name
    # H(V|S) >= H(V) - log L for every segmentation; one segment scores H(V) itself
    h_v = ent["one segment"]
    assert ent[f"{segments} speed bands"] >= h_v - math.log(segments) - 1e-6
    assert all(v <= h_v + 1e-6 for v in ent.values())


@pytest.mark.parametrize("max_speed", [0.5, 4.0, 16.0])
def test_a_fixed_max_speed_matches_the_loss(explorer, two_shot_cache, nets, max_speed):
    line = explorer.show(bins=16, segments=3, frame=10, max_speed=max_speed)
    ent, aff = reference(two_shot_cache, nets, 10, 16, 3, max_speed)
    assert f"bins to {max_speed:.2f} px (fixed);" in line and explorer.last.top == max_speed
    shown_e, shown_a = label_numbers(line, "entropy"), label_numbers(line, "affine")
    for name in ent:
        assert shown_e[name] == pytest.approx(ent[name], abs=6e-5), name
        assert shown_a[name] == pytest.approx(aff[name], abs=6e-5), name  # unaffected
    # 0 is the frame's largest speed again, as in the loss's default
    back = explorer.show(max_speed=0)
    top = float(explorer.pair(10)[1].norm(dim=0).max())
    assert explorer.last.top == pytest.approx(top, rel=1e-5)
    assert f"bins to {top:.2f} px (the frame's largest speed);" in back
    assert explorer.last.entropy == pytest.approx(reference(two_shot_cache, nets, 10, 16, 3)[0],
                                                  abs=1e-6)


def test_a_large_fixed_range_empties_the_upper_bins(explorer):
    """A still-ish frame under a range far above its speeds: every pixel near the first bins,
    so every entropy falls (the per-frame range spreads the same speeds over all bins)."""
    explorer.show(bins=32, segments=3, frame=10, max_speed=0)
    own = dict(explorer.last.entropy)
    explorer.show(max_speed=16.0)
    wide = explorer.last.entropy
    explorer.show(max_speed=0)
    assert all(wide[k] < own[k] for k in own)


def test_moving_each_slider_redraws(explorer):
    explorer.show(bins=16, segments=3, frame=10, max_speed=0)
    for control, value, prefix in [(explorer.bins, 24, "frame 10, bins 24, segments 3:"),
                                   (explorer.segments, 5, "frame 10, bins 24, segments 5:"),
                                   (explorer.max_speed, 8.0, "frame 10, bins 24, segments 5:"),
                                   (explorer.frame, 4, "frame 4, bins 24, segments 5: training;")]:
        before_png, before_info = explorer.image.value, explorer.info.value
        control.value = value  # the observer, as a reader moving the slider
        assert explorer.image.value != before_png
        assert explorer.info.value != before_info
        assert explorer.info.value.startswith(prefix), explorer.info.value
    explorer.show(max_speed=0)


def test_more_speed_bands_lower_their_entropy_loss(explorer):
    losses = []
    for segments in (1, 2, 4, 8):
        explorer.show(bins=32, segments=segments, frame=10)
        losses.append(explorer.last.entropy[f"{segments} speed bands"])
    assert losses[0] == pytest.approx(explorer.last.entropy["one segment"], abs=1e-6)
    assert losses == sorted(losses, reverse=True) and losses[-1] < losses[0]


def test_frames_without_a_pair_say_so(explorer, two_shot_cache):
    line = explorer.show(bins=32, segments=8, frame=CUT - 1)
    assert line.startswith(f"frame {CUT - 1}, bins 32, segments 8: last frame of shot 0; no flow")
    assert explorer.last.entropy == {} and explorer.image.value[:8] == PNG
    last = len(two_shot_cache.frames) - 1
    assert explorer.show(frame=last).startswith(f"frame {last}, bins 32, segments 8: last frame "
                                                f"of shot 1")
    assert explorer.show(frame=CUT).startswith(f"frame {CUT}, bins 32, segments 8: training")


def test_frame_status(two_shot_cache):
    # shot 1 = frames 12..21: held out from frame 20 on; pair 19 -> 20 straddles the split
    status = [frame_status(two_shot_cache, t) for t in range(CUT, 22)]
    assert status == ["training"] * 7 + ["between training and held-out", "held-out",
                                         "last frame of shot 1"]


def test_checkpoint_paths_are_loaded(two_shot_cache, nets, tmp_path):
    path = tmp_path / "a.pt"
    save_checkpoint(path, nets["net A"], {"size": [32, 48]})
    ex = video_explorer(two_shot_cache, {"from file": path, "net B": nets["net B"]}, bins=16,
                        segments=3, frame=10)
    assert "from file" in ex.last.entropy
    assert ex.last.entropy["from file"] == pytest.approx(
        reference(two_shot_cache, nets, 10, 16, 3)[0]["net A"], abs=1e-6)


@pytest.mark.parametrize("kwargs", [{"bins": 1}, {"bins": 65}, {"bins": 2.5}, {"bins": True},
                                    {"segments": 0}, {"segments": 11}, {"frame": -1},
                                    {"frame": 22}, {"frame": "10"}, {"max_speed": -0.5},
                                    {"max_speed": 16.5}, {"max_speed": 0.3},
                                    {"max_speed": True}, {"max_speed": "2"}])
def test_show_rejects_values_outside_the_controls(explorer, kwargs):
    before = explorer.info.value
    with pytest.raises(ValueError):
        explorer.show(**kwargs)
    assert explorer.info.value == before


def test_bad_builder_arguments_are_rejected(two_shot_cache, nets, tmp_path):
    with pytest.raises(ValueError):
        video_explorer(two_shot_cache, {})
    with pytest.raises(ValueError):
        video_explorer(two_shot_cache, {"x": 3})
    with pytest.raises(ValueError):  # networks with different L
        video_explorer(two_shot_cache, {"a": nets["net A"], "b": SegmentationNet(4, width=4)})
    with pytest.raises(ValueError):
        video_explorer(two_shot_cache, nets, bins=0)
    with pytest.raises(ValueError):
        video_explorer(two_shot_cache, nets, frame=99)
    with pytest.raises(ValueError, match="max_speed"):
        video_explorer(two_shot_cache, nets, max_speed=-1)
    with pytest.raises(FileNotFoundError):
        video_explorer(tmp_path / "no-cache", nets)
