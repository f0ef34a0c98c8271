"""The training loop: resuming gives exactly the uninterrupted result; logs and checkpoints."""

import json

import torch

from s3lib.data.cube import HELDOUT_SEEDS
from s3lib.models import load_checkpoint
from s3lib.train import TrainConfig, cube_data, reseed_dead_segments, train


def tiny(steps):
    return TrainConfig(size=16, num_segments=3, steps=steps, minutes=None, batch=2, frames=3,
                       eval_every=2, width=4, reseed_every=2)


def heldout():
    images, _, labels = cube_data(HELDOUT_SEEDS[:1], 16, 3)
    return images, labels


def test_resume_equals_an_uninterrupted_run(tmp_path):
    held = heldout()
    full = train(tiny(6), tmp_path / "a", progress=False, heldout=held)
    train(tiny(2), tmp_path / "b", progress=False, heldout=held)  # "interrupted" after 2 steps
    resumed = train(tiny(6), tmp_path / "b", resume=True, progress=False, heldout=held)
    a = torch.load(tmp_path / "a" / "checkpoint.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert full[-1]["loss"] == resumed[-1]["loss"] and full[-1]["miou"] == resumed[-1]["miou"]
    steps = [json.loads(x)["step"] for x in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    assert steps == [2, 4, 6]


def test_the_checkpoint_loads_with_its_config(tmp_path):
    train(tiny(2), tmp_path, progress=False, heldout=heldout())
    model, config = load_checkpoint(tmp_path / "checkpoint.pt")
    assert config["size"] == 16 and config["num_segments"] == 3
    assert model(torch.rand(1, 3, 16, 16)).shape == (1, 3, 16, 16)


def test_dead_segments_are_reseeded_from_a_live_one():
    from s3lib.models import SegmentationNet

    net = SegmentationNet(3, width=4)
    masks = torch.zeros(1, 3, 8, 8)
    masks[:, 0] = 0.6
    masks[:, 1] = 0.4  # segment 2 is dead
    flows = torch.randn(1, 2, 8, 8)
    gen = torch.Generator().manual_seed(0)
    before = net.head.weight[2].clone()
    assert reseed_dead_segments(net, masks, flows, 0.01, gen) == [2]
    assert not torch.equal(net.head.weight[2], before)
