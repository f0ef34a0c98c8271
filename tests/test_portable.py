"""s3lib.portable: the kernel pins and the correctly rounded sqrt / log."""

import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from s3lib import portable
from s3lib.losses import robust_penalty


def _floats(n: int = 100_000) -> torch.Tensor:
    gen = torch.Generator().manual_seed(1)
    return torch.rand(n, generator=gen) * 10 + 1e-3


def test_sqrt_is_correctly_rounded():
    x = _floats()
    expected = np.sqrt(x.numpy())  # numpy: the CPU's sqrt instruction, correctly rounded
    assert np.array_equal(portable.sqrt(x).numpy(), expected)


def test_log_matches_a_float64_reference_rounded_once():
    x = _floats()
    expected = np.log(x.numpy().astype(np.float64)).astype(np.float32)
    assert np.array_equal(portable.log(x).numpy(), expected)


def test_sqrt_and_log_keep_dtype_shape_and_gradient():
    x = (_floats(12).reshape(3, 4)).requires_grad_()
    y = portable.sqrt(x)
    assert y.dtype == torch.float32 and y.shape == (3, 4)
    y.sum().backward()
    assert torch.allclose(x.grad, 0.5 / x.detach().sqrt(), rtol=1e-6)
    d = _floats(5).double()
    assert portable.log(d).dtype == torch.float64
    assert torch.equal(portable.sqrt(d), d.sqrt())


def test_the_charbonnier_penalty_is_the_same_as_numpy_bit_for_bit():
    sq = _floats()
    rho = robust_penalty(sq, "charbonnier", 0.1).numpy()
    expected = np.sqrt(sq.numpy() + np.float32(0.1 * 0.1)) - np.float32(0.1)
    assert np.array_equal(rho, expected)


def test_the_test_session_is_pinned():
    for key, value in portable.PINS.items():
        assert os.environ.get(key) == value, key
    assert torch.backends.cpu.get_cpu_capability() == "AVX2"


def _run(code: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k not in portable.PINS}
    return subprocess.run([sys.executable, "-W", "always", "-c", code], capture_output=True,
                          text=True, check=True, env={**clean, **env})


def test_reproducible_pins_a_fresh_process_after_import_torch():
    code = ("import os, torch; from s3lib.setup import reproducible\n"
            "r = reproducible(0)\n"
            "print(r.cpu, os.environ['ATEN_CPU_CAPABILITY'], os.environ['MKL_CBWR'], "
            "os.environ['ONEDNN_MAX_CPU_ISA'])")
    out = _run(code, {})
    assert out.stdout.split() == ["AVX2", "avx2", "COMPATIBLE", "AVX2"]
    assert "RuntimeWarning" not in out.stderr


def test_not_portable_leaves_the_environment_alone():
    code = ("import os; from s3lib.setup import reproducible\n"
            "r = reproducible(0, portable=False)\n"
            "print(sorted(k for k in ('ATEN_CPU_CAPABILITY', 'MKL_CBWR', 'ONEDNN_MAX_CPU_ISA') "
            "if k in os.environ))")
    assert _run(code, {}).stdout.strip() == "[]"


def test_a_capability_other_than_the_pin_is_reported_and_warned_about():
    code = "from s3lib.setup import reproducible\nprint(reproducible(0).cpu)"
    out = _run(code, {"ATEN_CPU_CAPABILITY": "default"})
    assert out.stdout.strip() == "DEFAULT"
    assert "RuntimeWarning" in out.stderr and "not the portable AVX2" in out.stderr


def test_portable_must_be_a_bool():
    from s3lib.setup import reproducible

    with pytest.raises(ValueError, match="portable"):
        reproducible(0, portable="yes")


def _fit(make_opt, steps: int = 50, state=None):
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(10, 20), torch.nn.Tanh(), torch.nn.Linear(20, 1))
    opt = make_opt(net.parameters())
    if state is not None:
        net.load_state_dict(state[0])
        opt.load_state_dict(state[1])
    gen = torch.Generator().manual_seed(1)
    x, y = torch.randn(64, 10, generator=gen), torch.randn(64, 1, generator=gen)
    for _ in range(steps):
        loss = (net(x) - y).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return net, opt


def test_adam_takes_pytorchs_steps_up_to_the_last_bits():
    ours, _ = _fit(lambda p: portable.Adam(p, lr=1e-2))
    theirs, _ = _fit(lambda p: torch.optim.Adam(p, lr=1e-2))
    for a, b in zip(ours.parameters(), theirs.parameters()):
        assert torch.allclose(a, b, atol=1e-5), (a - b).abs().max()
    untrained, _ = _fit(lambda p: portable.Adam(p, lr=1e-2), steps=0)
    assert not torch.allclose(next(ours.parameters()), next(untrained.parameters()), atol=1e-3)


def test_adam_resumes_from_a_pytorch_adam_state_dict():
    net, opt = _fit(lambda p: torch.optim.Adam(p, lr=1e-2), steps=20)
    state = (net.state_dict(), opt.state_dict())
    resumed, ropt = _fit(lambda p: portable.Adam(p, lr=1e-2), steps=1, state=state)
    assert float(ropt.state_dict()["state"][0]["step"]) == 21


@pytest.mark.parametrize("option", ["amsgrad", "weight_decay", "maximize"])
def test_adam_rejects_options_it_does_not_implement(option):
    with pytest.raises(ValueError, match=option):
        portable.Adam([torch.zeros(2, requires_grad=True)], **{option: 1})
