"""s3lib.viz: palette, colouring of segments, overlays, figures."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from s3lib import viz  # noqa: E402


@pytest.mark.parametrize("num", [1, 5, 20, 33])
def test_palette_colours_are_distinct_and_stable(num):
    pal = viz.palette(num)
    assert pal.shape == (num, 3)
    assert ((pal >= 0) & (pal <= 1)).all()
    assert len({tuple(np.round(c, 3)) for c in pal}) == num
    np.testing.assert_array_equal(viz.palette(num)[: min(num, 5)], viz.palette(5)[: min(num, 5)])


def test_label_and_one_hot_mask_colouring_agree():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, (6, 7))
    one_hot = np.eye(4)[labels].transpose(2, 0, 1)
    by_labels = viz.colorize_labels(labels, num=4)
    np.testing.assert_array_equal(by_labels, viz.colorize_masks(one_hot))
    np.testing.assert_array_equal(by_labels[2, 3], np.round(viz.palette(4)[labels[2, 3]] * 255))
    np.testing.assert_array_equal(viz.colorize_masks(torch.from_numpy(one_hot)), by_labels)


def test_soft_masks_blend_colours():
    masks = np.full((2, 1, 1), 0.5)
    expected = np.round(viz.palette(2).mean(0) * 255)
    np.testing.assert_allclose(viz.colorize_masks(masks)[0, 0], expected, atol=1)


def test_overlay_extremes_and_layouts():
    rng = np.random.default_rng(1)
    img = rng.integers(0, 256, (5, 6, 3), dtype=np.uint8)
    labels = rng.integers(0, 3, (5, 6))
    np.testing.assert_array_equal(viz.overlay(img, labels, alpha=0), img)
    np.testing.assert_array_equal(viz.overlay(img, labels, alpha=1), viz.colorize_labels(labels))
    chw = torch.from_numpy(img).permute(2, 0, 1).float() / 255
    np.testing.assert_array_equal(viz.overlay(chw, labels, alpha=0), img)


@pytest.mark.parametrize("call", [
    lambda: viz.overlay(np.zeros((5, 6, 3)), np.zeros((4, 6), int)),
    lambda: viz.overlay(np.zeros((5, 6, 3)), np.zeros((5, 6), int), alpha=1.5),
    lambda: viz.colorize_labels(np.zeros((5, 6))),
    lambda: viz.colorize_labels(np.array([[-1, 0]])),
    lambda: viz.colorize_labels(np.array([[0, 5]]), num=3),
    lambda: viz.colorize_masks(np.zeros((5, 6))),
    lambda: viz.palette(0),
])
def test_bad_input_raises_value_error(call):
    with pytest.raises(ValueError):
        call()


def test_show_flow_reports_its_scale_and_png_renders():
    flow = np.zeros((20, 30, 2), np.float32)
    flow[5, 5] = (3.0, 4.0)
    fig, ax = plt.subplots()
    assert viz.show_flow(ax, flow, "t") == pytest.approx(5.0)
    assert viz.show_flow(ax, flow, max_flow=2.0, wheel=False) == 2.0
    viz.show_color_wheel(fig.add_subplot(2, 2, 4))
    png = viz.figure_to_png(fig)
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 1000
