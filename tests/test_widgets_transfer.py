"""The feature explorer of notebook 07 and the feature scores behind it, without a browser."""

import pytest
import torch

from s3lib.data.shapes import shapes_pairs
from s3lib.fcn import fcn8s_vgg16, fold_batchnorm, vgg16_classifier
from s3lib.transfer import block_features, channel_objectness, top_channels
from s3lib.widgets.transfer import FeatureExplorer, feature_explorer


@pytest.fixture(scope="module")
def scenes():
    return shapes_pairs(4, "test")


@pytest.fixture(scope="module")
def explorer(scenes):
    torch.manual_seed(0)
    nets = {"a": fold_batchnorm(fcn8s_vgg16(3, 0.0625), [scenes.images], 1),
            "b": fold_batchnorm(fcn8s_vgg16(3, 0.0625), [scenes.images], 1)}
    return feature_explorer(nets, scenes.images, scenes.labels, scene=1, block=2)


def test_initial_view(explorer):
    assert explorer.image.value[:8] == b"\x89PNG\r\n\x1a\n"
    assert explorer.info.value.startswith("scene 1, block 2: top-6 channels' activation")
    assert set(explorer.scores) == {"a", "b"}


def test_each_control_redraws(explorer):
    for control, value, text in ((explorer.scene, 3, "scene 3,"), (explorer.block, 4, "block 4:")):
        png, info = explorer.image.value, explorer.info.value
        control.value = value
        assert explorer.image.value != png and explorer.info.value != info
        assert text in explorer.info.value


def test_scores_are_the_objectness_of_the_top_channels(explorer, scenes):
    line = explorer.show(scene=2, block=1)
    feats = block_features(explorer.models["a"], scenes.images[2:3], 1)[0]
    want = float(channel_objectness(feats[top_channels(feats)], scenes.labels[2]).mean())
    assert f"a {want:.2f}" in line and explorer.scores["a"] == pytest.approx(want)


def test_a_broken_observer_is_detected(monkeypatch, scenes):
    monkeypatch.setattr(FeatureExplorer, "_on_change", lambda self, change: None)
    nets = {"a": fold_batchnorm(fcn8s_vgg16(3, 0.0625), [scenes.images], 1)}
    with pytest.raises(AssertionError):
        test_each_control_redraws(feature_explorer(nets, scenes.images, scenes.labels))


def test_bad_arguments(explorer, scenes):
    with pytest.raises(ValueError, match="scene"):
        explorer.show(scene=9, block=1)
    with pytest.raises(ValueError, match="block"):
        explorer.show(scene=0, block=6)
    with pytest.raises(ValueError, match="layers"):
        feature_explorer(explorer.models, scenes.images, scenes.labels[:2])


def test_objectness_and_block_features():
    layers = torch.zeros(8, 8, dtype=torch.long)
    layers[2:6, 2:6] = 1
    feats = torch.zeros(2, 4, 4)
    feats[0, 1:3, 1:3] = 1.0       # fires on the object only
    feats[1] = 1.0                 # fires everywhere
    got = channel_objectness(feats, layers)
    assert got[0] > 2.5 and got[1] == pytest.approx(1.0)
    assert top_channels(feats, 1).tolist() == [1]
    with pytest.raises(ValueError, match="both"):
        channel_objectness(feats, torch.zeros(8, 8, dtype=torch.long))
    net = fcn8s_vgg16(3, 0.0625).eval()
    clf = vgg16_classifier(net, 2).eval()
    x = torch.rand(1, 3, 64, 64)
    assert block_features(net, x, 3).shape == (1, 16, 8, 8)
    assert torch.equal(block_features(net, x, 5), block_features(clf, x, 5))
    with pytest.raises(ValueError, match="block"):
        block_features(net, x, 0)
