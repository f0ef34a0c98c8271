"""FCN-8s on VGG-16, batch-norm folding and the VGG-16 classifier (s3lib.fcn, notebook 07)."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from s3lib.fcn import (FC_CHANNELS, VGG16_BLOCKS, FCN8s, VGG16Classifier, batchnorm_layers,
                       count_parameters, fcn8s_vgg16, fcn_trunk_from_classifier, fold_batchnorm,
                       precise_batchnorm, trunk_parameters, vgg16_classifier)
from s3lib.models import load_checkpoint, save_checkpoint


def _trained(width: float = 0.125, seed: int = 0, size: int = 48) -> FCN8s:
    """A small FCN whose batch-norm statistics moved away from their init (a few forwards)."""
    torch.manual_seed(seed)
    net = fcn8s_vgg16(4, width)
    net.train()
    with torch.no_grad():
        for _ in range(3):
            net(torch.rand(6, 3, size, size))
    return net


def _vgg16_reference_parameters() -> int:
    """VGG-16's trunk counted from its published layer list (13 convs, fc6 on 512x7x7, fc7)."""
    total, cin = 0, 3
    for block in VGG16_BLOCKS:
        for c in block:
            total += cin * c * 9 + c
            cin = c
    return total + (512 * 49 * 4096 + 4096) + (4096 * 4096 + 4096)


def test_full_size_trunk_is_vgg16():
    net = fcn8s_vgg16(5, 1.0)
    assert trunk_parameters(net) == _vgg16_reference_parameters() == 134_260_544
    convs = [m for m in net.features.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 13 and all(c.kernel_size == (3, 3) and c.padding == (1, 1) for c in convs)
    assert net.fc6[0].kernel_size == (7, 7) and net.fc6[0].padding == (3, 3)
    assert net.fc7[0].kernel_size == (1, 1) and net.fc7[0].out_channels == FC_CHANNELS
    # parameter-free batch norm after each of the 13 convolutions, fc6 and fc7, nowhere else
    bns = batchnorm_layers(net)
    assert len(bns) == 15 and not any(b.affine for b in bns)
    assert count_parameters(net) - trunk_parameters(net) < 100_000  # small score heads


@pytest.mark.parametrize("hw", [(32, 32), (48, 48), (37, 53), (64, 96), (100, 33)])
def test_any_size_logits(hw):
    net = fcn8s_vgg16(3, 0.0625).eval()
    with torch.no_grad():
        out = net(torch.rand(2, 3, *hw))
    assert out.shape == (2, 3, *hw) and torch.isfinite(out).all()


def test_small_inputs_and_widths_are_refused():
    net = fcn8s_vgg16(3, 0.0625)
    with pytest.raises(ValueError, match=">= 32"):
        net(torch.rand(1, 3, 31, 64))
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        net(torch.rand(1, 1, 64, 64))
    with pytest.raises(ValueError, match="width: 0.001 leaves conv1_1"):
        fcn8s_vgg16(3, 0.001)
    with pytest.raises(ValueError, match="num_segments"):
        fcn8s_vgg16(1, 0.125)


def test_width_scales_every_channel():
    net = fcn8s_vgg16(4, 0.125)
    convs = [m.out_channels for m in net.features.modules() if isinstance(m, nn.Conv2d)]
    assert convs == [8, 8, 16, 16, 32, 32, 32, 64, 64, 64, 64, 64, 64]
    assert net.fc6[0].out_channels == net.fc7[0].out_channels == 512


@pytest.mark.parametrize("seed", [0, 1])
def test_fold_keeps_eval_outputs(seed):
    net = _trained(seed=seed)
    batches = [torch.rand(8, 3, 48, 48) for _ in range(3)]
    before = copy.deepcopy(net.state_dict())
    folded = fold_batchnorm(net, batches, num_batches=3)
    assert not batchnorm_layers(folded) and folded.batchnorm is False
    for k, v in net.state_dict().items():  # the original untouched
        assert torch.equal(v, before[k]), k
    reference = precise_batchnorm(copy.deepcopy(net), batches, 3).eval()
    x = torch.rand(4, 3, 48, 48)
    with torch.no_grad():
        a, b = reference(x), folded(x)
        a64 = copy.deepcopy(reference).double()(x.double())
        b64 = fold_batchnorm(copy.deepcopy(reference).double())(x.double())
    # in float64 the fold is exact; in float32 both paths round at about 1e-5 of the output
    assert (a64 - b64).abs().max() <= 1e-10 * a64.abs().max()
    assert (a - b).norm() <= 3e-5 * a.norm()
    # without re-estimation the fold uses the running statistics as they are
    plain = fold_batchnorm(net)
    with torch.no_grad():
        ev = copy.deepcopy(net).eval()(x)
        assert (plain(x) - ev).norm() <= 3e-5 * ev.norm()
        assert (plain(x) - b).norm() > 1e-3 * ev.norm()  # and those differ from precise BN


def test_precise_batchnorm_is_the_statistics_of_all_pixels():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4, affine=False),
                        nn.ReLU(), nn.Dropout(0.9))
    batches = [torch.rand(5, 3, 8, 8) * (i + 1) for i in range(3)]
    precise_batchnorm(net, batches, 3)
    with torch.no_grad():
        y = torch.cat([net[0](b) for b in batches])  # (15, 4, 8, 8)
    flat = y.transpose(0, 1).reshape(4, -1)
    torch.testing.assert_close(net[1].running_mean, flat.mean(1), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(net[1].running_var, flat.var(1, unbiased=True), rtol=1e-5, atol=1e-6)
    assert net.training  # the mode it was in is restored


def test_fold_refuses_unpaired_batchnorm():
    net = nn.Sequential(nn.BatchNorm2d(3), nn.Conv2d(3, 3, 1))
    with pytest.raises(ValueError, match="cannot fold"):
        fold_batchnorm(net)


@pytest.mark.parametrize("size", [224, 48])
def test_classifier_starts_from_the_trunk(size):
    torch.manual_seed(0)
    fcn = fold_batchnorm(_trained(width=0.0625, size=size)).eval()
    clf = vgg16_classifier(fcn, 20).eval()
    assert isinstance(clf, VGG16Classifier) and clf.fc8.out_features == 20
    x = torch.rand(2, 3, size, size)
    with torch.no_grad():
        f7 = fcn.fc7(fcn.fc6(fcn.features((x - fcn.mean) / fcn.std)))
        c7 = clf.fc7(clf.fc6(clf.pool5(x).flatten(1)))
        centre = f7[:, :, f7.shape[-2] // 2, f7.shape[-1] // 2]
        assert clf(x).shape == (2, 20)
    # fc6 as a linear layer on the (C, 7, 7) flattening is the 7x7 convolution at the centre
    torch.testing.assert_close(c7, centre, rtol=1e-4, atol=1e-5)
    assert 0.005 < float(clf.fc8.weight.detach().std()) < 0.015 and float(clf.fc8.bias.detach().abs().max()) == 0
    # back to an FCN: the same trunk
    back = fcn_trunk_from_classifier(clf, 4)
    for k, v in fcn.state_dict().items():
        if k.startswith(("features", "fc6", "fc7")):
            assert torch.equal(back.state_dict()[k], v), k


def test_classifier_with_batchnorm_folds():
    clf = vgg16_classifier(_trained(width=0.0625), 6)
    assert len([m for m in clf.modules() if isinstance(m, nn.BatchNorm1d)]) == 2
    with torch.no_grad():
        clf.train()
        clf(torch.rand(8, 3, 48, 48))
    folded = fold_batchnorm(clf)
    x = torch.rand(3, 3, 48, 48)
    with torch.no_grad():
        a, b = clf.eval()(x), folded(x)
    assert (a - b).norm() <= 3e-5 * a.norm() and not batchnorm_layers(folded)


def test_checkpoints_round_trip_and_name_what_differs(tmp_path):
    fcn = fold_batchnorm(_trained(width=0.0625))
    save_checkpoint(tmp_path / "fcn.pt", fcn, {"size": 48})
    loaded, cfg = load_checkpoint(tmp_path / "fcn.pt")
    assert isinstance(loaded, FCN8s) and cfg["width"] == 0.0625 and cfg["batchnorm"] is False
    for k, v in fcn.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v)
    with pytest.raises(ValueError, match=r"width is 0.0625, expected 0.125"):
        load_checkpoint(tmp_path / "fcn.pt", expect={"width": 0.125})
    with pytest.raises(ValueError, match="architecture is 'fcn8s-vgg16', expected 'vgg16-classifier'"):
        load_checkpoint(tmp_path / "fcn.pt", expect={"architecture": "vgg16-classifier"})
    clf = vgg16_classifier(fcn, 6)
    save_checkpoint(tmp_path / "clf.pt", clf, {"size": 48})
    loaded, cfg = load_checkpoint(tmp_path / "clf.pt")
    assert isinstance(loaded, VGG16Classifier) and cfg["num_classes"] == 6
    # weights of another width under this config
    payload = torch.load(tmp_path / "fcn.pt", weights_only=True)
    payload["config"]["width"] = 0.125
    torch.save(payload, tmp_path / "bad.pt")
    with pytest.raises(ValueError, match="bad.pt: weights do not fit"):
        load_checkpoint(tmp_path / "bad.pt")
