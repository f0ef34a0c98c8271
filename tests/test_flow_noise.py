"""s3lib.flow_noise: notebook 06's grid (both losses on the cube with exact, DIS and Farneback
flow), its end-point errors, summary and the rule for a verdict."""

import json
from dataclasses import fields

import numpy as np
import pytest
import torch

import s3lib.train
from s3lib import flow_noise
from s3lib.data.pairs import cube_pairs
from s3lib.flow_noise import (FLOWS, GRID_SETTINGS, endpoint_errors, estimated_cube_pairs,
                              flow_errors, grid_config, paired_differences, run_grid, summarise,
                              verdict, works_better)
from s3lib.train import TrainConfig

pytestmark = pytest.mark.usefixtures("restore_global_state")


@pytest.fixture(scope="module")
def exact():
    return cube_pairs((0,), size=32, frames=6, look="hues")


@pytest.mark.parametrize("method", ["dis", "farneback"])
def test_estimated_pairs_keep_images_and_labels_and_estimate_the_flow(exact, method):
    est = estimated_cube_pairs(method, seeds=(0,), size=32, frames=6)
    assert torch.equal(est.images, exact.images) and torch.equal(est.labels, exact.labels)
    assert est.source == exact.source and est.flows.shape == exact.flows.shape
    err = (est.flows - exact.flows).norm(dim=1)
    assert err.mean() > 0.05, "the estimate is not the exact flow"
    # ...but an estimate of it: closer than the zero flow and than the reversed motion, and
    # pointing the same way where something moves
    assert err.mean() < 0.9 * exact.flows.norm(dim=1).mean()
    assert err.mean() < 0.6 * (est.flows + exact.flows).norm(dim=1).mean()
    moving = exact.flows.norm(dim=1) > 0.3
    assert torch.nn.functional.cosine_similarity(est.flows, exact.flows, dim=1)[moving].mean() > 0.3


def test_exact_is_the_rendered_flow_and_bad_methods_are_named(exact):
    same = estimated_cube_pairs("exact", seeds=(0,), size=32, frames=6)
    assert torch.equal(same.flows, exact.flows)
    other = estimated_cube_pairs("dis", seeds=(0,), size=32, frames=6, look="pairs")
    assert torch.equal(other.images, cube_pairs((0,), size=32, frames=6, look="pairs").images)
    assert not torch.equal(other.images, exact.images), "look: the other textures"
    with pytest.raises(ValueError, match="method"):
        estimated_cube_pairs("raft", seeds=(0,), size=32, frames=6)


def test_endpoint_errors_match_a_reference():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(2, 3, 2, 5, 7)).astype(np.float32)
    ref = np.sqrt(((a - b) ** 2).sum(axis=1))
    got = endpoint_errors(torch.from_numpy(a), torch.from_numpy(b))
    np.testing.assert_allclose(got.numpy(), ref, rtol=1e-6)
    with pytest.raises(ValueError, match="estimate"):
        endpoint_errors(torch.zeros(3, 2, 5, 7), torch.zeros(3, 2, 5, 6))


def test_flow_errors_match_a_reference(exact):
    est = estimated_cube_pairs("dis", seeds=(0,), size=32, frames=6)
    e = flow_errors(est, exact)
    d = np.linalg.norm(est.flows.numpy() - exact.flows.numpy(), axis=1)  # (N, H, W)
    faces = exact.labels.numpy() > 0
    assert e["epe"] == pytest.approx(d.mean(), rel=1e-5)
    assert e["epe_faces"] == pytest.approx(d[faces].mean(), rel=1e-5)
    assert e["epe_background"] == pytest.approx(d[~faces].mean(), rel=1e-5)
    assert e["over_1px"] == pytest.approx((d > 1).mean(), rel=1e-6)
    assert e["speed"] == pytest.approx(np.linalg.norm(exact.flows.numpy(), axis=1).mean(), rel=1e-5)
    other = cube_pairs((1,), size=32, frames=6)
    with pytest.raises(ValueError, match="estimated"):
        flow_errors(est, other)


def test_the_grid_spells_out_every_training_setting():
    """Not one setting comes from TrainConfig's defaults (which move with the cube recipe)."""
    per_run = {"loss", "seed", "steps", "size", "eval_every"}
    assert set(GRID_SETTINGS) | per_run == {f.name for f in fields(TrainConfig)}
    assert not set(GRID_SETTINGS) & per_run
    cfg = grid_config("entropy", 2, 30, 16)
    assert (cfg.loss, cfg.seed, cfg.steps, cfg.size, cfg.eval_every) == ("entropy", 2, 30, 16, 30)
    assert all(getattr(cfg, k) == v for k, v in GRID_SETTINGS.items())
    with pytest.raises(ValueError, match="loss"):
        grid_config("marginal", 0, 30, 16)
    with pytest.raises(ValueError, match="size"):
        grid_config("affine", 0, 30, 18)


def _runs(values):
    """Made-up records: ``values[(loss, flow)] = [miou per seed]`` (FG-ARI = miou / 2)."""
    return [{"loss": loss, "flow": flow, "seed": s, "miou": v, "fg_ari": v / 2}
            for (loss, flow), vs in values.items() for s, v in enumerate(vs)][::-1]


def test_summarise_matches_numpy():
    rng = np.random.default_rng(3)
    values = {(loss, flow): rng.uniform(0.3, 0.9, 3).tolist() for loss in ("affine", "entropy")
              for flow in FLOWS}
    table = summarise({"runs": _runs(values)})
    assert set(table) == set(values)
    for key, vs in values.items():
        row = table[key]
        assert row["n"] == 3 and row["seeds"] == [0, 1, 2] and row["miou"] == pytest.approx(vs)
        assert row["miou_mean"] == pytest.approx(np.mean(vs))
        assert row["miou_std"] == pytest.approx(np.std(vs, ddof=1))
        assert row["fg_ari_std"] == pytest.approx(np.std(np.array(vs) / 2, ddof=1))
    one = summarise(_runs({("affine", "exact"): [0.5]}))
    assert np.isnan(one[("affine", "exact")]["miou_std"])


def test_paired_differences_pair_by_seed():
    runs = _runs({("entropy", "dis"): [0.5, 0.6, 0.7], ("affine", "dis"): [0.4, 0.7]})
    assert paired_differences(runs, "dis") == pytest.approx({0: 0.1, 1: -0.1})
    assert paired_differences(runs, "dis", "fg_ari") == pytest.approx({0: 0.05, 1: -0.05})
    with pytest.raises(ValueError, match="measure"):
        paired_differences(runs, "dis", "ap")


@pytest.mark.parametrize("diffs, expected", [
    ([0.10, 0.12, 0.08], 1),          # one sign, mean 0.10 > std 0.02
    ([-0.10, -0.12, -0.08], -1),
    ([0.01, 0.01, 0.50], 0),          # one sign, but mean 0.17 < std 0.28
    ([0.10, 0.12, -0.01], 0),         # signs differ
    ([0.0003, 0.0004, 0.0003], 1),    # tiny but consistent: the rule has no size threshold
    ([0.0, 0.1, 0.1], 0),             # a tie is not a sign
    ([0.2], 0),                       # one seed is no evidence
])
def test_the_rule_for_a_claim(diffs, expected):
    assert works_better(diffs) == expected


def test_verdict_names_the_loss_or_says_inconclusive():
    vals = {("entropy", "dis"): [0.7, 0.72, 0.69], ("affine", "dis"): [0.6, 0.61, 0.6],
            ("entropy", "exact"): [0.5, 0.8, 0.6], ("affine", "exact"): [0.6, 0.7, 0.65],
            ("entropy", "farneback"): [0.5, 0.5, 0.5], ("affine", "farneback"): [0.7, 0.8, 0.75]}
    runs = _runs(vals)
    assert verdict(runs, "dis") == "entropy"
    assert verdict(runs, "exact") == "inconclusive"
    assert verdict(runs, "farneback", "fg_ari") == "affine"


def test_run_grid_tiny_writes_resumable_json(tmp_path, monkeypatch):
    out = tmp_path / "grid.json"
    real, calls, crash_at = s3lib.train.train, [], [3]

    def crashing(*args, **kwargs):
        calls.append(args[0])
        if len(calls) == crash_at[0]:
            crash_at[0] = 0
            raise RuntimeError("crash")
        return real(*args, **kwargs)

    monkeypatch.setattr(s3lib.train, "train", crashing)
    with pytest.raises(RuntimeError, match="crash"):
        run_grid(out, seeds=(0, 1), steps=20, size=16, flows=("exact", "dis"), progress=False)
    saved = json.loads(out.read_text())
    assert len(saved["runs"]) == 2, "each finished run is on disk before the next starts"
    calls.clear()
    grid = run_grid(out, seeds=(0, 1), steps=20, size=16, flows=("exact", "dis"), progress=False)
    assert len(calls) == 6 and len(grid["runs"]) == 8, "the rerun trains only the missing runs"
    assert json.loads(out.read_text()) == grid
    assert {(r["loss"], r["flow"], r["seed"]) for r in grid["runs"]} == {
        (loss, flow, s) for loss in ("affine", "entropy") for flow in ("exact", "dis")
        for s in (0, 1)}
    for r in grid["runs"]:
        assert 0 <= r["miou"] <= 1 and -1 <= r["fg_ari"] <= 1
        assert r["train"]["steps"] == 20 and r["train"]["size"] == 16
        assert r["train"]["threads"] == 1 and r["train"]["merge_below"] == 0.0
    assert grid["settings"]["steps"] == 20 and set(grid["epe"]) == {"dis"}
    assert grid["settings"]["look"] == "hues"  # the cube's textures, recorded with the grid
    assert grid["epe"]["dis"]["epe"] > 0.05
    # same seed, same flow: the two losses train on the same batches but reach different nets
    by = {(r["loss"], r["flow"], r["seed"]): r for r in grid["runs"]}
    assert by[("affine", "dis", 0)]["heldout_loss"] != by[("entropy", "dis", 0)]["heldout_loss"]
    # other settings: a fresh grid, not a mix
    calls.clear()
    other = run_grid(out, seeds=(0,), steps=10, size=16, flows=("exact",), progress=False)
    assert len(calls) == 2 and len(other["runs"]) == 2 and other["settings"]["steps"] == 10
    text = flow_noise.format_table(other)
    assert "exact" in text and "inconclusive" in text


def test_run_grid_names_unknown_flows(tmp_path):
    with pytest.raises(ValueError, match="flows"):
        run_grid(tmp_path / "g.json", flows=("sintel",), progress=False)
