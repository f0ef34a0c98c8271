"""s3lib.check.expect: the notebooks' visible tolerance checks."""

import math

import pytest
import torch

from s3lib.check import decimals_for, expect


def test_a_value_within_the_tolerance_is_printed_with_its_target(capsys, monkeypatch):
    monkeypatch.delenv("S3_QUICK", raising=False)
    assert expect("held-out mIoU", 0.9274, 0.93, 0.02) == pytest.approx(0.9274)
    assert capsys.readouterr().out == "held-out mIoU 0.927 (expected 0.93 +- 0.02)\n"
    expect("loss", torch.tensor(0.5409), 0.5409, 1e-4, "px", decimals=4)
    assert capsys.readouterr().out == "loss 0.5409 px (expected 0.5409 px +- 0.0001 px)\n"
    expect("moving pixels", 12.46, 12.5, 0.5, "%")
    assert capsys.readouterr().out == "moving pixels 12.46% (expected 12.5% +- 0.5%)\n"


@pytest.mark.parametrize("value", [0.95, 0.9, float("nan"), -0.93])
def test_a_value_past_the_tolerance_raises(value, monkeypatch):
    monkeypatch.delenv("S3_QUICK", raising=False)
    with pytest.raises(AssertionError, match="held-out mIoU"):
        expect("held-out mIoU", value, 0.93, 0.01)


def test_the_tolerance_edge_is_inside(monkeypatch):
    monkeypatch.delenv("S3_QUICK", raising=False)
    expect("x", 1.5, 1.0, 0.5)
    with pytest.raises(AssertionError):
        expect("x", 1.5 + 1e-9, 1.0, 0.5)


def test_quick_mode_prints_but_does_not_check(capsys, monkeypatch):
    monkeypatch.setenv("S3_QUICK", "1")
    assert expect("held-out mIoU", 0.2, 0.93, 0.01) == pytest.approx(0.2)
    assert "quick mode: not checked" in capsys.readouterr().out


@pytest.mark.parametrize("kwargs, message", [
    ({"tol": -1.0}, "tol must be >= 0"), ({"tol": "0.1"}, "tol must be a real number"),
    ({"target": None}, "target must be a real number"), ({"value": "abc"}, "value must be a number"),
])
def test_bad_arguments_are_named(kwargs, message, monkeypatch):
    monkeypatch.delenv("S3_QUICK", raising=False)
    args = {"name": "x", "value": 1.0, "target": 1.0, "tol": 0.1, **kwargs}
    with pytest.raises(ValueError, match=message):
        expect(**args)


def test_decimals_follow_the_tolerance():
    assert [decimals_for(t) for t in (0.02, 0.5, 3, 30, 1e-4, 0.005)] == [3, 2, 1, 0, 5, 4]
    assert decimals_for(0) == 6 and not math.isnan(decimals_for(1e-9))
