"""The training loop: resuming gives exactly the uninterrupted result; logs and checkpoints;
the same loop on video caches with each loss; flips that keep the flow consistent."""

import json

import numpy as np
import pytest
import torch

from s3lib.data.pairs import FlowPairs, cube_pairs, heldout_cube_pairs, video_pairs
from s3lib.models import SegmentationNet, load_checkpoint
from s3lib.train import (TrainConfig, _batch, evaluate, evaluate_checkpoint, motion_loss,
                         reseed_dead_segments, segment_costs, train)


def tiny(steps, **kw):
    settings = dict(size=16, num_segments=3, steps=steps, minutes=None, batch=2, frames=3,
                    eval_every=2, width=4, reseed_every=2)
    return TrainConfig(**{**settings, **kw})


def tiny_data():
    return cube_pairs((0,), 16, 3), heldout_cube_pairs(16, 3)


def test_resume_equals_an_uninterrupted_run(tmp_path):
    data = tiny_data()
    full = train(tiny(6), tmp_path / "a", progress=False, data=data)
    train(tiny(2), tmp_path / "b", progress=False, data=data)  # "interrupted" after 2 steps
    resumed = train(tiny(6), tmp_path / "b", resume=True, progress=False, data=data)
    a = torch.load(tmp_path / "a" / "checkpoint.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert full[-1]["loss"] == resumed[-1]["loss"] and full[-1]["miou"] == resumed[-1]["miou"]
    steps = [json.loads(x)["step"] for x in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    assert steps == [2, 4, 6]


def test_resume_with_other_settings_is_refused(tmp_path):
    data = tiny_data()
    train(tiny(2), tmp_path, progress=False, data=data)
    with pytest.raises(ValueError, match="other settings"):
        train(tiny(4, lr=1e-3), tmp_path, resume=True, progress=False, data=data)


def test_the_checkpoint_loads_with_its_config(tmp_path):
    train(tiny(2), tmp_path, progress=False, data=tiny_data())
    model, config = load_checkpoint(tmp_path / "checkpoint.pt")
    assert config["size"] == 16 and config["num_segments"] == 3
    assert config["dataset"] == "cube" and config["loss"] == "affine"
    assert model(torch.rand(1, 3, 16, 16)).shape == (1, 3, 16, 16)


def test_records_hold_heldout_scores(tmp_path):
    records = train(tiny(2), tmp_path, progress=False, data=tiny_data())
    rec = records[-1]
    assert {"step", "loss", "heldout_loss", "miou", "fg_ari", "segment_fractions"} <= set(rec)
    assert abs(sum(rec["segment_fractions"]) - 1) < 1e-6 and len(rec["segment_fractions"]) == 3


def test_evaluate_scores_a_perfect_segmenter_as_perfect():
    pairs = heldout_cube_pairs(16, 3)

    class Oracle(SegmentationNet):  # logits from the true labels
        def forward(self, images):
            idx = [i for i in range(len(pairs)) if torch.equal(pairs.images[i], images[0])][0]
            lab = pairs.labels[idx:idx + len(images)]
            return torch.nn.functional.one_hot(lab, 7).permute(0, 3, 1, 2).float() * 20

    scores = evaluate(Oracle(7, width=4), pairs, batch=1)
    assert scores["miou"] == pytest.approx(1.0) and scores["fg_ari"] == pytest.approx(1.0)
    fractions = np.bincount(pairs.labels.flatten().numpy(), minlength=7) / pairs.labels.numel()
    assert np.allclose(scores["segment_fractions"], fractions)


def test_dead_segments_are_reseeded_from_a_live_one():
    net = SegmentationNet(3, width=4)
    masks = torch.zeros(1, 3, 8, 8)
    masks[:, 0] = 0.6
    masks[:, 1] = 0.4  # segment 2 is dead
    flows = torch.randn(1, 2, 8, 8)
    gen = torch.Generator().manual_seed(0)
    before = net.head.weight[2].clone()
    assert reseed_dead_segments(net, masks, flows, 0.01, gen) == [2]
    assert not torch.equal(net.head.weight[2], before)


def test_segment_costs_single_out_the_segment_that_straddles_two_motions():
    flows = torch.zeros(1, 2, 8, 8)
    flows[0, 0, :, 4:] = 3.0  # right half moves
    masks = torch.zeros(1, 3, 8, 8)
    masks[0, 0, :, :4] = 1  # segment 0: left half, one motion
    masks[0, 1, :4, 4:] = 1  # segment 1: top right, one motion
    masks[0, 2, 4:, :] = 0.5  # segment 2 shares the bottom rows with the others
    masks[0, 0, 4:, :4] = 0.5
    masks[0, 1, 4:, 4:] = 0.5
    for loss in ("affine", "entropy"):
        costs = segment_costs(loss, masks, flows)
        assert int(costs.argmax()) == 2, (loss, costs)


def test_motion_loss_dispatch_and_bad_name():
    masks = torch.full((1, 2, 8, 8), 0.5)
    flows = torch.randn(1, 2, 8, 8)
    for name in ("affine", "entropy", "marginal"):
        assert torch.isfinite(motion_loss(name, masks, flows))
    with pytest.raises(ValueError, match="loss"):
        motion_loss("sharpness", masks, flows)


def test_flipped_batches_mirror_images_and_negate_u():
    images = torch.rand(2, 3, 4, 6)
    flows = torch.randn(2, 2, 4, 6)
    pairs = FlowPairs(images, flows)
    im, fl = _batch(pairs, torch.tensor([0, 1]), torch.tensor([True, False]), "cpu")
    assert torch.equal(im[0], images[0].flip(-1)) and torch.equal(im[1], images[1])
    assert torch.equal(fl[0, 0], -flows[0, 0].flip(-1)) and torch.equal(fl[0, 1], flows[0, 1].flip(-1))
    assert torch.equal(fl[1], flows[1])


@pytest.mark.parametrize("bad, message", [
    (dict(loss="sharpness"), "loss"), (dict(dataset="voc"), "dataset"),
    (dict(dataset="video"), "data"), (dict(num_segments=1), "num_segments"),
    (dict(size=18), "size"),
])
def test_bad_settings(tmp_path, bad, message):
    with pytest.raises(ValueError, match=message):
        train(tiny(1, **bad), tmp_path, progress=False)


@pytest.mark.parametrize("loss", ["affine", "entropy", "marginal"])
def test_video_training_with_each_loss(video_cache, tmp_path, loss):
    config = TrainConfig(dataset="video", data=str(video_cache), loss=loss, num_segments=3,
                         steps=2, minutes=None, batch=2, eval_every=2, width=4)
    records = train(config, tmp_path, progress=False)
    assert records[-1]["step"] == 2 and np.isfinite(records[-1]["heldout_loss"])
    model, cfg = load_checkpoint(tmp_path / "checkpoint.pt")
    assert cfg["dataset"] == "video" and cfg["loss"] == loss and cfg["size"] == [32, 48]
    result = evaluate_checkpoint(tmp_path / "checkpoint.pt", data=video_cache)
    held = video_pairs(video_cache, "heldout")
    assert result["frames"] == len(held) > 0 and result["split"] == "heldout"
    assert abs(sum(result["segment_fractions"]) - 1) < 1e-6
    assert result["loss"] == pytest.approx(records[-1]["heldout_loss"], rel=1e-5)


def test_video_pairs_split_without_overlap(video_cache):
    train_p, held = video_pairs(video_cache, "train"), video_pairs(video_cache, "heldout")
    frames = lambda p: {int(s.split(":")[1]) for s in p.source}  # noqa: E731
    assert frames(train_p) and frames(held) and max(frames(train_p)) < min(frames(held))
    assert train_p.images.shape[-2:] == (32, 48) and train_p.labels is None


def test_eval_of_a_video_checkpoint_needs_data(video_cache, tmp_path):
    config = TrainConfig(dataset="video", data=str(video_cache), num_segments=2, steps=1,
                         minutes=None, batch=1, width=4)
    train(config, tmp_path, progress=False)
    with pytest.raises(ValueError, match="--data"):
        evaluate_checkpoint(tmp_path / "checkpoint.pt")
