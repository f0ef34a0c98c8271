"""The training loop: resuming gives exactly the uninterrupted result; logs and checkpoints;
the same loop on video caches with each loss; flips that keep the flow consistent."""

import json
import math
from dataclasses import replace

import numpy as np
import pytest
import torch

import s3lib.train
from s3lib.data.cube import HELDOUT_SEEDS, TRAIN_SEEDS, render_cube_sequence
from s3lib.data.pairs import FlowPairs, cube_pairs, heldout_cube_pairs, video_pairs
from s3lib.losses import entropy_motion_loss
from s3lib.models import SegmentationNet, load_checkpoint
from s3lib.motion import DEFAULT_EPS
from s3lib.train import (TrainConfig, _batch, dihedral, evaluate, evaluate_checkpoint,
                         budget_spent, learning_rate, merge_costs, motion_loss, reseed_dead_segments, rotate_hue,
                         segment_costs, segment_usage, train, training_data, zoom_crop)


def tiny(steps, **kw):
    settings = dict(size=16, num_segments=3, steps=steps, minutes=None, batch=2, frames=3,
                    eval_every=2, width=4, reseed_every=2)
    return TrainConfig(**{**settings, **kw})


def tiny_data():
    return cube_pairs((0,), 16, 3), heldout_cube_pairs(16, 3)


def _same_runs(a_dir, b_dir, full, resumed):
    a = torch.load(a_dir / "checkpoint.pt", weights_only=True)["model"]
    b = torch.load(b_dir / "checkpoint.pt", weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert full[-1]["loss"] == resumed[-1]["loss"] and full[-1]["miou"] == resumed[-1]["miou"]
    steps = [json.loads(x)["step"] for x in (b_dir / "metrics.jsonl").read_text().splitlines()]
    assert steps == [2, 4, 6]


def test_resume_equals_an_uninterrupted_run(tmp_path, monkeypatch):
    # a run killed between checkpoints (here: in its second evaluation, after step 4) and
    # resumed with the same settings ends exactly where an uninterrupted run does, learning-rate
    # schedule included
    data = tiny_data()
    full = train(tiny(6), tmp_path / "a", progress=False, data=data)
    real, calls = s3lib.train.evaluate, []

    def killed_in_second_evaluation(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(s3lib.train, "evaluate", killed_in_second_evaluation)
    with pytest.raises(KeyboardInterrupt):
        train(tiny(6), tmp_path / "b", progress=False, data=data)
    monkeypatch.undo()
    assert torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=True)["step"] == 2
    resumed = train(tiny(6), tmp_path / "b", resume=True, progress=False, data=data)
    _same_runs(tmp_path / "a", tmp_path / "b", full, resumed)


def test_a_longer_budget_continues_a_finished_run(tmp_path):
    # with a constant learning rate and no re-seeding (both depend on the share of the budget
    # spent), 2 steps then 4 more are the same as 6 in one go
    data = tiny_data()
    flat = dict(schedule="constant", reseed_every=0)
    full = train(tiny(6, **flat), tmp_path / "a", progress=False, data=data)
    train(tiny(2, **flat), tmp_path / "b", progress=False, data=data)
    resumed = train(tiny(6, **flat), tmp_path / "b", resume=True, progress=False, data=data)
    _same_runs(tmp_path / "a", tmp_path / "b", full, resumed)


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
    masks[:, 0, :4], masks[:, 1, :4] = 0.6, 0.4  # segment 0 wins the top half
    masks[:, 0, 4:], masks[:, 1, 4:] = 0.4, 0.6  # segment 1 the bottom half; segment 2 is dead
    flows = torch.randn(1, 2, 8, 8)
    gen = torch.Generator().manual_seed(0)
    before = net.head.weight[2].clone()
    assert reseed_dead_segments(net, masks, flows, 0.01, gen) == [2]
    assert not torch.equal(net.head.weight[2], before)


def zombie_masks():
    """Segment 2 keeps 10 % of the mass at every pixel and wins none."""
    masks = torch.zeros(1, 3, 8, 8)
    masks[:, 0, :, :4], masks[:, 1, :, :4] = 0.6, 0.3
    masks[:, 0, :, 4:], masks[:, 1, :, 4:] = 0.3, 0.6
    masks[:, 2] = 0.1
    return masks


def test_usage_by_wins_sees_a_zombie_segment_that_mass_misses():
    masks = zombie_masks()
    assert torch.allclose(segment_usage(masks, "wins"), torch.tensor([0.5, 0.5, 0.0]))
    assert torch.allclose(segment_usage(masks, "mass"), torch.tensor([0.45, 0.45, 0.1]))
    with pytest.raises(ValueError, match="by"):
        segment_usage(masks, "votes")


def test_a_zombie_segment_is_reseeded_by_wins_not_by_mass():
    flows = torch.randn(1, 2, 8, 8)
    for by, expected in (("wins", [2]), ("mass", [])):
        net = SegmentationNet(3, width=4)
        before = net.head.weight.clone()
        got = reseed_dead_segments(net, zombie_masks(), flows, 0.01,
                                   torch.Generator().manual_seed(0), by=by)
        assert got == expected
        assert torch.equal(net.head.weight[2], before[2]) == (by == "mass")


def test_cosine_schedule_by_steps_and_by_time():
    steps = TrainConfig(steps=100, minutes=None, lr=1e-3)
    assert learning_rate(steps, 0, 999.0) == pytest.approx(1e-3)
    assert learning_rate(steps, 50, 0.0) == pytest.approx(5e-4)
    assert learning_rate(steps, 100, 0.0) == pytest.approx(0.0, abs=1e-12)
    timed = TrainConfig(steps=None, minutes=2.0, lr=1e-3)
    assert learning_rate(timed, 7, 60.0) == pytest.approx(5e-4)
    assert learning_rate(timed, 7, 500.0) == pytest.approx(0.0, abs=1e-12)  # past the budget
    flat = TrainConfig(steps=100, minutes=None, lr=1e-3, schedule="constant")
    assert learning_rate(flat, 99, 0.0) == 1e-3


def test_budget_spent_by_steps_and_by_time():
    assert budget_spent(TrainConfig(steps=8, minutes=None), 2, 999.0) == 0.25
    assert budget_spent(TrainConfig(steps=None, minutes=2.0), 2, 30.0) == 0.25
    assert budget_spent(TrainConfig(steps=None, minutes=2.0), 2, 300.0) == 1.0  # clamped


@pytest.mark.parametrize("until, expected", [(0.5, [2]), (1.0, [2, 4, 6]), (0.0, [])])
def test_reseeding_stops_when_its_share_of_the_budget_is_spent(tmp_path, monkeypatch, until,
                                                                 expected):
    asked, reseeded = [], []  # steps at which the budget was checked / segments re-seeded
    real = s3lib.train.budget_spent

    def spy(config, step, elapsed):
        asked.append(step)
        return real(config, step, elapsed)

    monkeypatch.setattr(s3lib.train, "budget_spent", spy)
    monkeypatch.setattr(s3lib.train, "reseed_dead_segments",
                        lambda *args, **kwargs: reseeded.append(asked[-1]) or [])
    # a constant learning rate: budget_spent is then only asked about re-seeding
    train(tiny(8, reseed_until=until, schedule="constant"), tmp_path, progress=False,
          data=tiny_data())
    assert asked == [2, 4, 6, 8] and reseeded == expected


def test_bad_reseed_until():
    with pytest.raises(ValueError, match="reseed_until"):
        TrainConfig(reseed_until=1.5).validate()


def test_training_uses_the_schedule(tmp_path):
    """The optimiser's last learning rate is the schedule's for the last step."""
    train(tiny(4), tmp_path, progress=False, data=tiny_data())
    payload = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    lr = payload["optimizer"]["param_groups"][0]["lr"]
    assert lr == pytest.approx(learning_rate(tiny(4), 3, 0.0)) and lr < tiny(4).lr


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
    im, fl = _batch(pairs, torch.tensor([0, 1]), torch.tensor([1, 0]), "cpu")
    assert torch.equal(im[0], images[0].flip(-1)) and torch.equal(im[1], images[1])
    assert torch.equal(fl[0, 0], -flows[0, 0].flip(-1)) and torch.equal(fl[0, 1], flows[0, 1].flip(-1))
    assert torch.equal(fl[1], flows[1])


@pytest.mark.parametrize("k", range(8))
def test_every_symmetry_keeps_the_flow_true_to_the_pictures(k):
    """Frame t+1 warped back by the transformed flow matches transformed frame t as well as
    before the transform, and a transformed pixel's flow is the transformed vector."""
    from s3lib.data.cube import render_cube_sequence
    from s3lib.flow import warp_error

    seq = render_cube_sequence(2, 32, seed=3)
    hwc = lambda x: x.permute(1, 2, 0).numpy()  # noqa: E731
    before = warp_error(hwc(seq.frames[0]), hwc(seq.frames[1]), hwc(seq.flows[0]))
    f0, fl = dihedral(seq.frames[0], seq.flows[0], k)
    f1, _ = dihedral(seq.frames[1], seq.flows[0], k)
    after = warp_error(hwc(f0), hwc(f1), hwc(fl))
    assert after == pytest.approx(before, rel=1e-6)
    wrong = warp_error(hwc(f0), hwc(f1), hwc(dihedral(seq.frames[0], -seq.flows[0], k)[1]))
    assert wrong > 2 * before
    rotated = warp_error(hwc(f0), hwc(f1), hwc(fl.flip(0))) if k & 3 else None
    if rotated is not None:
        assert rotated > 1.2 * before  # the swapped vector is not the motion


def test_hue_rotation_keeps_grey_and_brightness_and_cycles():
    grey = torch.full((1, 3, 2, 2), 0.4)
    assert torch.allclose(rotate_hue(grey, torch.tensor([1.0])), grey, atol=1e-6)
    img = torch.rand(2, 3, 4, 4) * 0.5 + 0.25
    turned = rotate_hue(img, torch.tensor([2 * math.pi / 3, 0.0]))
    assert torch.allclose(turned[0], img[0][[2, 0, 1]], atol=1e-5)  # 120 degrees: R -> G -> B
    assert torch.allclose(turned[1], img[1])
    assert torch.allclose(turned.sum(1), img.sum(1), atol=1e-5)


@pytest.mark.parametrize("bad, message", [
    (dict(loss="sharpness"), "loss"), (dict(dataset="voc"), "dataset"),
    (dict(dataset="video"), "data"), (dict(num_segments=1), "num_segments"),
    (dict(size=18), "size"), (dict(schedule="step"), "schedule"), (dict(dead_by="x"), "dead_by"),
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


def test_zoom_crop_is_the_identity_at_zoom_one():
    images, flows = torch.rand(2, 3, 8, 12), torch.randn(2, 2, 8, 12)
    im, fl = zoom_crop(images, flows, torch.ones(2), torch.zeros(2, 2))
    assert torch.allclose(im, images, atol=1e-6) and torch.allclose(fl, flows, atol=1e-6)


def test_zoomed_flow_is_the_motion_of_the_zoomed_pictures():
    """An affine flow f(x) = A x + t, zoomed by 2 around the centre, is 2 f at the window's
    points: the flow of the zoomed picture (exact for affine flow, up to float error)."""
    ys, xs = torch.meshgrid(torch.arange(16.0), torch.arange(16.0), indexing="ij")
    a = torch.tensor([[0.02, -0.01], [0.03, 0.01]])
    flow = torch.stack([a[0, 0] * xs + a[0, 1] * ys + 1, a[1, 0] * xs + a[1, 1] * ys - 2])[None]
    _, zoomed = zoom_crop(torch.zeros(1, 3, 16, 16), flow, torch.tensor([2.0]), torch.zeros(1, 2))
    # output pixel (x, y) shows input point (x / 2 + 4, y / 2 + 4) (pixel centres)
    xin, yin = (xs + 0.5) / 2 - 0.5 + 4, (ys + 0.5) / 2 - 0.5 + 4
    expect = 2 * torch.stack([a[0, 0] * xin + a[0, 1] * yin + 1, a[1, 0] * xin + a[1, 1] * yin - 2])
    assert torch.allclose(zoomed[0], expect, atol=1e-4)


def test_gap_gives_pairs_t_to_t_plus_gap_with_the_renderers_flow():
    from s3lib.data.cube import render_cube_sequence
    from s3lib.data.pairs import cube_pairs

    pairs = cube_pairs(seeds=(3,), size=16, frames=6, gap=2)
    seq = render_cube_sequence(6, 16, 3, gap=2)
    assert len(pairs) == 4 and pairs.source[-1] == "cube3:3"
    assert torch.equal(pairs.flows, seq.flows) and torch.equal(pairs.images, seq.frames[:4])
    one = cube_pairs(seeds=(3,), size=16, frames=6)
    assert pairs.flows.abs().mean() > 1.5 * one.flows.abs().mean()  # larger motions


@pytest.mark.parametrize("kwargs", [{"gap": 0}, {"gap": 99}, {"gap": 2, "dataset": "video",
                                                               "data": "x"}])
def test_bad_gap_is_named(kwargs):
    with pytest.raises(ValueError, match="gap"):
        TrainConfig(steps=1, **kwargs).validate()


@pytest.mark.parametrize("setting", ["gap", "eps"])
def test_a_run_saved_without_a_setting_is_refused_by_name(tmp_path, setting):
    """No compatibility defaults: a checkpoint must store every TrainConfig field (except
    those of ADDED_SETTINGS, added after the committed checkpoints, next test)."""
    config = TrainConfig(size=16, steps=2, eval_every=1, frames=4, batch=2, width=4, levels=1)
    data = training_data(config)
    train(config, tmp_path, progress=False, data=data)
    path = tmp_path / "checkpoint.pt"
    payload = torch.load(path, weights_only=True)
    del payload["config"]["train"][setting]
    torch.save(payload, path)
    with pytest.raises(ValueError, match=rf"checkpoint\.pt: .*missing \['{setting}'\]"):
        train(replace(config, steps=3), tmp_path, resume=True, progress=False, data=data)
    with pytest.raises(ValueError, match=rf"missing \['{setting}'\]"):
        evaluate_checkpoint(path, frames=3)


def test_a_resume_with_other_settings_is_refused(tmp_path):
    config = TrainConfig(size=16, steps=2, eval_every=1, frames=4, batch=2, width=4, levels=1)
    data = training_data(config)
    train(config, tmp_path, progress=False, data=data)
    records = train(replace(config, steps=3), tmp_path, resume=True, progress=False, data=data)
    assert records[-1]["step"] == 3
    with pytest.raises(ValueError, match="other settings"):
        train(replace(config, steps=4, eps=1e-3), tmp_path, resume=True, progress=False,
              data=data)


def test_training_and_reseeding_fit_with_the_configured_ridge(tmp_path, monkeypatch):
    """Every affine fit of a run (training loss, re-seeding costs, held-out scores) uses
    ``config.eps``."""
    seen = {"loss": [], "costs": []}
    loss, costs = s3lib.train.motion_loss, s3lib.train.segment_costs

    def loss_spy(*args, **kwargs):
        seen["loss"].append(kwargs.get("eps", args[4] if len(args) > 4 else None))
        return loss(*args, **kwargs)

    def costs_spy(*args, **kwargs):
        seen["costs"].append(kwargs.get("eps", args[3] if len(args) > 3 else None))
        return costs(*args, **kwargs)

    monkeypatch.setattr(s3lib.train, "motion_loss", loss_spy)
    monkeypatch.setattr(s3lib.train, "segment_costs", costs_spy)
    config = TrainConfig(size=16, steps=2, eval_every=2, frames=4, batch=2, width=4, levels=1,
                         eps=0.5, reseed_every=1, dead_usage=1.0)  # every segment re-seeded
    train(config, tmp_path, progress=False,
          data=(cube_pairs(size=16, frames=4), heldout_cube_pairs(16, frames=3)))
    assert len(seen["loss"]) >= 3 and set(seen["loss"]) == {0.5}  # 2 steps + held-out batches
    assert seen["costs"] and set(seen["costs"]) == {0.5}


@pytest.mark.parametrize("eps", [0.0, -1e-6, float("nan"), float("inf"), "1e-6", True])
def test_bad_eps_is_named(eps):
    with pytest.raises(ValueError, match="eps"):
        TrainConfig(steps=1, eps=eps).validate()


def test_eps_is_the_ridge_of_the_training_loss_and_of_its_scores():
    """The cube's true faces fit their affine motions almost exactly under the default ridge
    (1e-6); a ridge of 1e-4 shrinks the slopes of small faces, so the same masks cost more. ``motion_loss``, ``segment_costs`` and ``evaluate`` all use the ridge given."""
    from s3lib.losses import affine_motion_loss

    pairs = heldout_cube_pairs(32, frames=3)
    masks = torch.nn.functional.one_hot(pairs.labels, 7).permute(0, 3, 1, 2).float()
    small, large = (motion_loss("affine", masks, pairs.flows, eps=e) for e in (1e-6, 1e-4))
    assert float(small) < 0.5 * float(large)
    assert torch.equal(small, affine_motion_loss(masks, pairs.flows, eps=1e-6))
    costs = segment_costs("affine", masks, pairs.flows)
    assert torch.equal(costs, segment_costs("affine", masks, pairs.flows, eps=DEFAULT_EPS))
    assert float(costs.max()) < 0.8 * float(segment_costs("affine", masks, pairs.flows,
                                                          eps=1e-4).max())
    model = SegmentationNet(7, 4, levels=1)
    scores = [evaluate(model, pairs, eps=e)["loss"] for e in (1e-6, 1e-4)]
    assert scores[0] != scores[1]


def test_eval_of_a_checkpoint_scores_with_the_ridge_it_trained_with(tmp_path):
    config = TrainConfig(size=16, steps=1, eval_every=1, frames=4, batch=2, width=4, levels=1,
                         eps=0.5)  # a ridge far from the default, 1e-6
    data = (cube_pairs(size=16, frames=4, look=config.look),
            heldout_cube_pairs(16, frames=3, look=config.look))
    records = train(config, tmp_path, progress=False, data=data)
    result = evaluate_checkpoint(tmp_path / "checkpoint.pt", frames=3)
    assert result["loss"] == pytest.approx(records[-1]["heldout_loss"], rel=1e-5)
    model, _ = load_checkpoint(tmp_path / "checkpoint.pt")
    default_ridge = evaluate(model, heldout_cube_pairs(16, frames=3))["loss"]
    assert result["loss"] != pytest.approx(default_ridge, rel=0.05)


def two_motion_scene():
    """An 8x8 flow: the left half translates by (1, 0), the top right quarter by (0, 1), the
    bottom right quarter rotates. Three soft segments: 0 and 1 split the left half (two pieces
    of one motion), 2 holds the whole right half (two motions: the worst fit)."""
    y, x = torch.meshgrid(torch.linspace(-1, 1, 8, dtype=torch.float64),
                          torch.linspace(-1, 1, 8, dtype=torch.float64), indexing="ij")
    right = torch.stack([torch.where(y < 0, 0.0, -y * 2), torch.where(y < 0, 1.0, x * 2)])
    flow = torch.where(x < 0, torch.stack([torch.ones_like(x), torch.zeros_like(x)]), right)[None]
    labels = torch.zeros(8, 8, dtype=torch.long)
    labels[:4, :4], labels[4:, :4], labels[:, 4:] = 0, 1, 2
    masks = torch.nn.functional.one_hot(labels, 3).permute(2, 0, 1)[None].double() * 0.98 + 0.01
    return masks, flow


def reference_merge_cost(masks, flows, i, j, eps=1e-6):
    """Union cost minus the mass-weighted own costs, per pixel of the union, by one fit each."""
    def cost(m):  # mass-weighted mean residual length of one segment's own affine fit
        return float(segment_costs("affine", m[:, None], flows, eps)[0])
    mi, mj = masks[:, i], masks[:, j]
    own = cost(mi) * float(mi.sum()) + cost(mj) * float(mj.sum())
    return cost(mi + mj) - own / float((mi + mj).sum())


def test_merge_costs_against_one_fit_per_pair():
    masks, flow = two_motion_scene()
    got = merge_costs("affine", masks, flow)
    assert got.shape == (3, 3) and torch.isinf(got.diagonal()).all()
    assert torch.allclose(got, got.T)
    for i in range(3):
        for j in range(i + 1, 3):
            assert float(got[i, j]) == pytest.approx(reference_merge_cost(masks, flow, i, j),
                                                     rel=1e-6, abs=1e-9)
    # two pieces of one translation merge almost for free (the 1 % leaks of the soft masks
    # aside); a translation and the right half's two motions do not
    assert abs(float(got[0, 1])) < 0.02 and float(got[0, 2]) > 0.1
    entropy = merge_costs("entropy", masks, flow)
    assert abs(float(entropy[0, 1])) < 0.05 and float(entropy[0, 2]) > 0.1


def test_merge_reseeding_moves_a_redundant_piece_to_the_worst_segment():
    masks, flow = two_motion_scene()
    worst = float(segment_costs("affine", masks, flow)[2])
    assert worst > 0.1  # the right half: two motions in one segment
    for below, expected in ((0.0, []), (0.05, [0]), (2 * worst, [])):
        net = SegmentationNet(3, width=4)
        before = net.head.weight.clone()
        got = reseed_dead_segments(net, masks.float(), flow.float(), 0.01,
                                   torch.Generator().manual_seed(0), merge_below=below)
        assert got == expected, below
        changed = [k for k in range(3) if not torch.equal(net.head.weight[k], before[k])]
        assert changed == expected
        if expected:  # the piece now starts from the worst segment's weights
            w = net.head.weight.detach()
            assert float((w[0] - before[2]).abs().mean()) < 0.2 * float(before[2].abs().mean())


def test_split_above_leaves_the_spare_segment_dead_once_every_motion_has_a_model():
    """A dead segment 2 beside two segments that each hold one translation (plus 0.05 px of
    noise): with ``split_above`` above their cost nothing is re-seeded; with a threshold below
    it (or 0, off) the dead one is re-seeded as before. The merge rule is held back the same
    way."""
    flow = torch.zeros(1, 2, 8, 8, dtype=torch.float64)
    flow[:, 0, :, :4], flow[:, 1, :, 4:] = 1.0, 1.0
    flow += 0.05 * torch.randn(flow.shape, generator=torch.Generator().manual_seed(0),
                               dtype=torch.float64)
    masks = torch.zeros(1, 3, 8, 8, dtype=torch.float64)
    masks[:, 0, :, :4] = masks[:, 1, :, 4:] = 0.98
    masks[:, 2] = 1 - masks[:, :2].sum(1)  # 2 % of every pixel's mass, winning none
    masks[:, 1, :, :4] = masks[:, 0, :, 4:] = 0.0
    live = float(segment_costs("affine", masks, flow)[:2].max())
    assert 0.02 < live < 0.1  # both halves fit to within the noise
    for above, expected in ((0.0, [2]), (0.1, []), (live / 2, [2])):
        net = SegmentationNet(3, width=4)
        before = net.head.weight.clone()
        got = reseed_dead_segments(net, masks.float(), flow.float(), 0.01,
                                   torch.Generator().manual_seed(0), split_above=above)
        assert got == expected, above
        assert torch.equal(net.head.weight[2], before[2]) == (expected == [])
    masks, flow = two_motion_scene()  # merge rule: segment 2 holds two motions (cost > 0.1)
    worst = float(segment_costs("affine", masks, flow)[2])
    for above, expected in ((worst / 2, [0]), (2 * worst, [])):
        got = reseed_dead_segments(SegmentationNet(3, width=4), masks.float(), flow.float(),
                                   0.01, torch.Generator().manual_seed(0), merge_below=0.05,
                                   split_above=above)
        assert got == expected, above


def test_train_passes_split_above_to_reseeding(tmp_path, monkeypatch):
    seen = []
    monkeypatch.setattr(s3lib.train, "reseed_dead_segments",
                        lambda *args, **kwargs: seen.append(kwargs["split_above"]) or [])
    train(tiny(6, split_above=0.25, reseed_until=1.0), tmp_path, progress=False, data=tiny_data())
    assert seen == [0.25, 0.25]
    with pytest.raises(ValueError, match="split_above"):
        TrainConfig(split_above=-1.0).validate()


def test_entropy_settings_reach_the_loss(tmp_path):
    pairs = cube_pairs((0,), size=16, frames=3)
    masks = torch.full((2, 3, 16, 16), 1 / 3)
    flows = pairs.flows[:2]
    default = motion_loss("entropy", masks, flows)
    assert float(default) == pytest.approx(float(entropy_motion_loss(masks, flows, 32)))
    assert float(motion_loss("entropy", masks, flows, bins=8)) == pytest.approx(
        float(entropy_motion_loss(masks, flows, 8)))
    fixed = motion_loss("entropy", masks, flows, max_speed=3.0)
    assert float(fixed) == pytest.approx(float(entropy_motion_loss(masks, flows, 32, 3.0)))
    assert float(fixed) != pytest.approx(float(default))
    for bad in ({"bins": 1}, {"bins": 2.5}, {"max_speed": -1.0}, {"merge_below": float("nan")}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            TrainConfig(steps=1, **bad).validate()


def test_no_coords_trains_a_colour_only_network(tmp_path):
    cfg = TrainConfig(steps=2, minutes=None, size=16, frames=3, width=4, levels=2, batch=2,
                      coords=False, eval_every=2)
    train(cfg, tmp_path, progress=False)
    model, config = load_checkpoint(tmp_path / "checkpoint.pt")
    assert config["coords"] is False and config["train"]["coords"] is False
    assert model.coords is False


def test_the_look_reaches_the_training_and_heldout_cubes():
    cfg = TrainConfig(steps=1, minutes=None, size=16, frames=3, look="pairs")
    train_pairs, heldout = training_data(cfg)
    want = render_cube_sequence(3, 16, TRAIN_SEEDS[0], look="pairs")
    assert torch.equal(train_pairs.images[:2], want.frames[:2])
    assert torch.equal(heldout.images[:2], render_cube_sequence(3, 16, HELDOUT_SEEDS[0],
                                                                 look="pairs").frames[:2])
    hues, _ = training_data(replace(cfg, look="hues"))
    assert not torch.equal(hues.images[:2], train_pairs.images[:2])


@pytest.mark.parametrize("setting, other", [("weight_decay", 0.1), ("crop", 0.5)])
def test_a_checkpoint_from_before_an_added_setting_trained_without_it(tmp_path, setting, other):
    config = TrainConfig(size=16, steps=2, eval_every=1, frames=4, batch=2, width=4, levels=1,
                         **s3lib.train.ADDED_SETTINGS)  # a run as it was made before them
    data = training_data(config)
    train(config, tmp_path, progress=False, data=data)
    path = tmp_path / "checkpoint.pt"
    payload = torch.load(path, weights_only=True)
    for name in s3lib.train.ADDED_SETTINGS:
        del payload["config"]["train"][name]
    torch.save(payload, path)
    assert setting in s3lib.train.ADDED_SETTINGS
    assert getattr(TrainConfig.from_dict(payload["config"]["train"]), setting) == \
        s3lib.train.ADDED_SETTINGS[setting] != other
    records = train(replace(config, steps=3), tmp_path, resume=True, progress=False, data=data)
    assert records[-1]["step"] == 3
    with pytest.raises(ValueError, match="other settings"):  # it did not train with it
        train(replace(config, steps=4, **{setting: other}), tmp_path, resume=True,
              progress=False, data=data)


def test_crop_windows_cut_pictures_and_flow_alike():
    images, flows = torch.rand(3, 3, 12, 16), torch.randn(3, 2, 12, 16)
    corners = torch.tensor([[0, 0], [4, 8], [2, 5]])
    im, fl = s3lib.train.crop_windows(images, flows, 8, corners)
    assert im.shape == (3, 3, 8, 8) and fl.shape == (3, 2, 8, 8)
    for i, (r, c) in enumerate(corners.tolist()):
        assert torch.equal(im[i], images[i, :, r:r + 8, c:c + 8])
        assert torch.equal(fl[i], flows[i, :, r:r + 8, c:c + 8])  # a window moves nothing


def loss_shapes(monkeypatch) -> list[tuple[bool, tuple[int, int]]]:
    """Record, for every ``motion_loss`` that ``train`` computes, whether gradients were on (a
    training step) and the masks' ``(H, W)``."""
    seen = []
    real = s3lib.train.motion_loss
    monkeypatch.setattr(s3lib.train, "motion_loss", lambda name, masks, flows, *a, **k: seen.append(
        (torch.is_grad_enabled(), tuple(masks.shape[-2:]))) or real(name, masks, flows, *a, **k))
    return seen


def test_a_cropped_run_trains_on_windows_and_scores_whole_pictures(tmp_path, monkeypatch):
    seen = loss_shapes(monkeypatch)
    records = train(tiny(2, crop=0.5), tmp_path, progress=False, data=tiny_data())
    assert {shape for grad, shape in seen if grad} == {(8, 8)}  # training steps: windows
    assert {shape for grad, shape in seen if not grad} == {(16, 16)}  # held-out: whole
    assert records[-1]["step"] == 2 and np.isfinite(records[-1]["miou"])
    again = train(tiny(2, crop=0.5), tmp_path / "again", progress=False, data=tiny_data())
    assert again[-1]["loss"] == records[-1]["loss"]  # the windows come from the run's seed
    other = train(tiny(2, crop=0.75), tmp_path / "other", progress=False, data=tiny_data())
    assert other[-1]["loss"] != records[-1]["loss"]


def test_crop_side_rounds_to_the_networks_multiple_of_four():
    assert s3lib.train.crop_side(64, 0.75) == 48 and s3lib.train.crop_side(128, 0.75) == 96
    assert s3lib.train.crop_side(16, 0.75) == 12 and s3lib.train.crop_side(64, 0.7) == 44
    assert s3lib.train.crop_side(64, 1.0) == 0 and s3lib.train.crop_side(8, 0.5) == 0  # whole
    assert s3lib.train.crop_side(64, 0.01) == 8


@pytest.mark.parametrize("bad", [0, -0.5, 1.5, math.nan, True, "0.5"])
def test_bad_crop_is_named(bad):
    with pytest.raises(ValueError, match="crop"):
        tiny(1, crop=bad).validate()


def test_video_trains_on_whole_frames_whatever_the_crop(video_cache, tmp_path, monkeypatch):
    seen = loss_shapes(monkeypatch)
    config = TrainConfig(dataset="video", data=str(video_cache), num_segments=2, steps=1,
                         minutes=None, batch=1, width=4, crop=0.5)  # caches are 32x48
    train(config, tmp_path, progress=False)
    assert {shape for _, shape in seen} == {(32, 48)}


def test_weight_decay_shrinks_only_the_convolutions_batch_norm_follows():
    torch.manual_seed(0)
    model = SegmentationNet(3, 4, levels=2)
    scaled, other = s3lib.train.normalised_weights(model)
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(scaled) == len(convs) - 1 == 2 * (2 * 2 + 1)  # every block conv, not the head
    assert all(p.ndim == 4 for p in scaled) and any(p is model.head.weight for p in other)
    assert len(scaled) + len(other) == len(list(model.parameters()))
    assert type(s3lib.train.make_optimizer(model, 1e-2)) is torch.optim.Adam
    opt = s3lib.train.make_optimizer(model, 1e-2, weight_decay=0.5)
    before = {id(p): p.detach().clone() for p in model.parameters()}
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    opt.step()  # no gradient: only the decay moves weights, by lr * weight_decay
    for p in scaled:
        assert torch.allclose(p, before[id(p)] * (1 - 1e-2 * 0.5))
    for p in other:
        assert torch.equal(p, before[id(p)])


def test_weight_decay_reaches_the_optimizer_and_bad_values_are_named(tmp_path, monkeypatch):
    seen = []
    real = s3lib.train.make_optimizer
    monkeypatch.setattr(s3lib.train, "make_optimizer",
                        lambda model, lr, wd=0.0: seen.append(wd) or real(model, lr, wd))
    train(tiny(2, weight_decay=0.25), tmp_path, progress=False, data=tiny_data())
    assert seen == [0.25]
    for bad in (-0.1, math.inf, True):
        with pytest.raises(ValueError, match="weight_decay"):
            tiny(1, weight_decay=bad).validate()
