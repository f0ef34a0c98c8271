"""The segmentation network and its checkpoints (untrusted files: weights_only loading)."""

import pickle

import pytest
import torch

from s3lib.models import SegmentationNet, load_checkpoint, save_checkpoint


def test_output_shape_and_parameter_count():
    net = SegmentationNet(num_segments=5)
    out = net(torch.rand(2, 3, 32, 48))
    assert out.shape == (2, 5, 32, 48)
    params = sum(p.numel() for p in net.parameters())
    assert 100_000 < params < 1_000_000, params


@pytest.mark.parametrize("kwargs", [{"num_segments": 1}, {"width": 2}])
def test_bad_construction(kwargs):
    with pytest.raises(ValueError):
        SegmentationNet(**kwargs)


@pytest.mark.parametrize("shape", [(1, 3, 30, 32), (1, 3, 4, 4), (1, 1, 32, 32)])
def test_bad_image_sizes_are_named(shape):
    with pytest.raises(ValueError, match="images"):
        SegmentationNet(3, width=8)(torch.rand(*shape))


def test_round_trip_gives_the_same_outputs(tmp_path):
    torch.manual_seed(0)
    net = SegmentationNet(4, width=8).eval()
    save_checkpoint(tmp_path / "c.pt", net, {"size": 32, "steps": 7})
    loaded, config = load_checkpoint(tmp_path / "c.pt")
    assert config["size"] == 32 and config["num_segments"] == 4 and config["steps"] == 7
    x = torch.rand(1, 3, 32, 32)
    assert torch.equal(net(x), loaded(x))
    assert not any(p.name.endswith(".tmp") for p in tmp_path.iterdir())


def test_checkpoint_of_another_shape_names_what_differs(tmp_path):
    save_checkpoint(tmp_path / "c.pt", SegmentationNet(4, width=8), {"size": 32})
    payload = torch.load(tmp_path / "c.pt", weights_only=True)
    payload["config"]["num_segments"] = 6
    torch.save(payload, tmp_path / "bad.pt")
    with pytest.raises(ValueError, match=r"bad\.pt: weights do not fit.*head\.weight: shape"):
        load_checkpoint(tmp_path / "bad.pt")


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_foreign_and_malicious_files_are_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    (tmp_path / "evil.pt").write_bytes(pickle.dumps({"config": Evil(), "model": {}}))
    with pytest.raises(ValueError, match="evil.pt: not a readable checkpoint"):
        load_checkpoint(tmp_path / "evil.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="junk.pt"):
        load_checkpoint(tmp_path / "junk.pt")
    torch.save({"config": {"architecture": "other"}, "model": {}}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="architecture"):
        load_checkpoint(tmp_path / "other.pt")
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "missing.pt")


def test_export_keeps_the_network_and_drops_the_optimiser(tmp_path, capsys):
    from s3lib.cli import main
    from s3lib.models import export_checkpoint

    torch.manual_seed(0)
    net = SegmentationNet(3, width=4)
    opt = torch.optim.Adam(net.parameters())
    net(torch.rand(2, 3, 8, 8)).sum().backward()
    opt.step()
    save_checkpoint(tmp_path / "full.pt", net, {"size": 8},
                    extra={"optimizer": opt.state_dict(), "step": 7, "elapsed": 1.5})
    export_checkpoint(tmp_path / "full.pt", tmp_path / "small.pt")
    small = torch.load(tmp_path / "small.pt", weights_only=True)
    assert "optimizer" not in small and small["step"] == 7
    assert (tmp_path / "small.pt").stat().st_size < (tmp_path / "full.pt").stat().st_size
    model, config = load_checkpoint(tmp_path / "small.pt")
    x = torch.rand(1, 3, 8, 8)
    assert torch.equal(model(x), net.eval()(x)) and config["size"] == 8
    capsys.readouterr()
    code = main(["export", str(tmp_path / "nope.pt"), "--out", str(tmp_path / "x.pt")])
    err = capsys.readouterr().err
    assert code == 2 and "nope.pt" in err and err.startswith("s3 export: error:")


@pytest.mark.parametrize("levels", [1, 2, 3, 4, 5])
def test_every_depth_keeps_the_image_size(levels):
    net = SegmentationNet(4, width=4, levels=levels).eval()
    for h, w in [(64, 64), (36, 44), (8, 12)]:  # 36x44 and 8x12: padded inside, then cropped
        assert net(torch.rand(2, 3, h, w)).shape == (2, 4, h, w)


def test_odd_sizes_are_padded_with_edge_values_then_cropped():
    """A 20x28 picture through a 3-level net is the 24x32 edge-padded picture's logits, cropped."""
    torch.manual_seed(0)
    net = SegmentationNet(3, width=4, levels=3, coords=False).eval()
    x = torch.rand(1, 3, 20, 28)
    padded = torch.nn.functional.pad(x, (0, 4, 0, 4), mode="replicate")
    assert torch.equal(net(x), net(padded)[..., :20, :28])


def test_channels_double_per_level_up_to_four_times():
    from s3lib.models import level_channels
    assert level_channels(16, 4) == [16, 32, 64, 64, 64]
    assert level_channels(32, 2) == [32, 64, 128]


@pytest.mark.parametrize("levels", [0, 6, 2.0])
def test_bad_depth(levels):
    with pytest.raises(ValueError, match="levels"):
        SegmentationNet(3, width=4, levels=levels)


def test_a_checkpoint_without_its_depth_is_refused_by_name(tmp_path):
    """Every checkpoint stores ``levels`` (the committed ones were re-exported with it)."""
    save_checkpoint(tmp_path / "c.pt", SegmentationNet(3, width=8, levels=2), {"size": 16})
    payload = torch.load(tmp_path / "c.pt", weights_only=True)
    del payload["config"]["levels"]
    torch.save(payload, tmp_path / "old.pt")
    with pytest.raises(ValueError, match=r"old\.pt: config lacks \['levels'\]"):
        load_checkpoint(tmp_path / "old.pt")


def test_a_checkpoint_of_another_depth_names_what_differs(tmp_path):
    save_checkpoint(tmp_path / "c.pt", SegmentationNet(3, width=4, levels=3), {"size": 16})
    payload = torch.load(tmp_path / "c.pt", weights_only=True)
    payload["config"]["levels"] = 2
    torch.save(payload, tmp_path / "deep.pt")
    with pytest.raises(ValueError, match=r"deep\.pt: weights do not fit.*enc3"):
        load_checkpoint(tmp_path / "deep.pt")
