"""The same digits on every x86 CPU: math-library pins and correctly rounded ``sqrt`` / ``log``.

Fixing the seed and the thread count (:func:`s3lib.setup.reproducible`) makes a run repeat on
one machine. It does not make two machines agree: PyTorch picks its kernels by the CPU it finds
(AVX-512 on one, AVX2 on another), and so do the libraries it calls. Measured on this course's
machines, a notebook printed ``0.5411`` on one CPU and ``0.5412`` on another, and a short
training run ended at matched mIoU 0.774 instead of 0.775. Three things differ:

- ATen's vectorised kernels (reductions, softmax): pinned by ``ATEN_CPU_CAPABILITY=avx2``;
- oneDNN's convolutions: pinned by ``ONEDNN_MAX_CPU_ISA=AVX2``;
- MKL's matrix products and linear solves: pinned by ``MKL_CBWR=COMPATIBLE`` (MKL's
  conditional numerical reproducibility: one code path on Intel and AMD processors).

All three are read lazily, at the first operation that needs them, so :func:`pin` works after
``import torch`` as long as nothing has been computed yet (every notebook's first cell calls
``reproducible``, which calls it). One thing no switch fixes: PyTorch's float32 ``sqrt``,
``log`` and ``tanh`` go through MKL's vector math library, whose last bit depends on the CPU
even in MKL's compatible mode (of 20,480 float32 square roots, 1,961 were not the correctly
rounded value on this course's machine and 2,123 on an emulated AVX2 CPU, not the same ones).
:func:`sqrt` and :func:`log` compute in float64 and round once; the float32 result no longer
depends on the CPU (``tests/test_portable.py`` checks it against NumPy bit for bit), and the
losses use them. The pinned kernels are slower than AVX-512 ones, so the command line's
training runs unpinned (:func:`s3lib.train.train`). Explained in ``notebooks/00_overview.ipynb``.
"""

from __future__ import annotations

import math
import os
import warnings

import torch

PINS: dict[str, str] = {
    "ATEN_CPU_CAPABILITY": "avx2",
    "MKL_CBWR": "COMPATIBLE",
    "ONEDNN_MAX_CPU_ISA": "AVX2",
}
"""Environment variables that pin PyTorch's kernels to one code path on every x86-64 CPU with
AVX2 (Intel since 2013, AMD since 2015)."""


def pin() -> str:
    """Pin PyTorch's math libraries to the portable code paths of :data:`PINS`.

    Sets each variable unless the environment already has it (child processes inherit them).
    Returns the CPU capability ATen now uses (``"AVX2"`` when pinned). Warns when it is
    something else: a CPU without AVX2, a variable set to another value, or an operation that
    ran before the pin (restart the kernel and call ``reproducible`` first).
    """
    for key, value in PINS.items():
        os.environ.setdefault(key, value)
    capability = torch.backends.cpu.get_cpu_capability()
    if capability != PINS["ATEN_CPU_CAPABILITY"].upper():
        warnings.warn(
            f"PyTorch computes with {capability} kernels, not the portable "
            f"{PINS['ATEN_CPU_CAPABILITY'].upper()} ones: printed digits may differ from the "
            f"committed outputs (restart and call s3lib.setup.reproducible before computing)",
            RuntimeWarning, stacklevel=3)
    return capability


def sqrt(x: torch.Tensor) -> torch.Tensor:
    """Correctly rounded ``sqrt`` of a float32 tensor, the same on every CPU (any shape).

    Computed in float64 and rounded once; float64 input is passed to ``torch.sqrt``.
    Differentiable.
    """
    if x.dtype == torch.float32:
        return torch.sqrt(x.double()).float()
    return torch.sqrt(x)


def log(x: torch.Tensor) -> torch.Tensor:
    """Correctly rounded natural ``log`` of a float32 tensor on every CPU (see :func:`sqrt`)."""
    if x.dtype == torch.float32:
        return torch.log(x.double()).float()
    return torch.log(x)


class Adam(torch.optim.Adam):
    """``torch.optim.Adam`` whose square root is :func:`sqrt`: the same steps on every CPU.

    PyTorch's Adam divides by ``exp_avg_sq.sqrt()``, a float32 square root whose last bit
    depends on the CPU (see the module docstring); over a training run those bits grow into a
    different result. This is the same update (Kingma & Ba's, with PyTorch's bias corrections
    and ``eps`` outside the root), one parameter at a time. State dicts are PyTorch's, so a
    checkpoint of either optimiser resumes with the other. Only the plain options are
    supported (no ``amsgrad``, ``weight_decay``, ``maximize``): others are a ``ValueError``.
    """

    def __init__(self, params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, **options) -> None:
        unsupported = {k: v for k, v in options.items() if v}
        if unsupported:
            raise ValueError(f"portable.Adam: unsupported options {sorted(unsupported)}; "
                             f"use torch.optim.Adam for them")
        super().__init__(params, lr=lr, betas=betas, eps=eps, foreach=False)

    @torch.no_grad()
    def step(self, closure=None):  # noqa: D102 (torch.optim.Optimizer.step)
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["step"] = torch.tensor(0.0)
                    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["step"] += 1
                step = float(state["step"])
                state["exp_avg"].lerp_(p.grad, 1 - beta1)
                state["exp_avg_sq"].mul_(beta2).addcmul_(p.grad, p.grad, value=1 - beta2)
                denom = (sqrt(state["exp_avg_sq"]) / math.sqrt(1 - beta2**step)).add_(group["eps"])
                p.addcdiv_(state["exp_avg"], denom, value=-group["lr"] / (1 - beta1**step))
        return loss
