"""A prepared check for a machine with a GPU (notebook 07's full scale); prints one JSON line.

1. Images/s of full-size FCN-8s/VGG-16 pre-training at 224x224 with the S3 affine loss
   (forward, loss, backward, Adam step; bf16 autocast, channels_last; deterministic, as
   ``s3 pretrain`` runs) against the same step with a trivial loss (the mean of the logits):
   the ratio is what the S3 loss costs on top of the network.
2. A few hundred ``s3 finetune voc2007`` iterations (the protocol's settings at 224x224, batch
   16) on a VOC-layout fixture written to a temporary folder: iterations/s and the mAP it
   prints (meaningless on the fixture; the point is that the full-scale path runs).

``python benchmarks/gpu.py`` (defaults: the full network, CUDA). It also runs on the CPU at a
tiny size, which is how the test suite checks it: ``python benchmarks/gpu.py --device cpu
--width 0.0625 --size 64 --batch 2 --iters 2 --finetune-iters 2``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the VOC fixture


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def pretrain_speed(device: str, width: float, size: int, batch: int, iters: int,
                   amp: bool) -> dict:
    from s3lib.fcn import count_parameters, fcn8s_vgg16, trunk_parameters
    from s3lib.losses import affine_motion_loss

    from s3lib.setup import reproducible

    reproducible(0, threads=torch.get_num_threads())  # as `s3 pretrain` runs (deterministic)
    net = fcn8s_vgg16(5, width).to(device)
    images = torch.rand(batch, 3, size, size, device=device)
    flows = torch.randn(batch, 2, size, size, device=device)
    if device.startswith("cuda"):
        net = net.to(memory_format=torch.channels_last)
        images = images.contiguous(memory_format=torch.channels_last)
    opt = torch.optim.Adam(net.parameters(), lr=1e-4)

    def step(s3: bool) -> None:
        with torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16,
                            enabled=amp):
            logits = net(images)
        loss = (affine_motion_loss(logits.float().softmax(1), flows) if s3
                else logits.float().mean())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    out = {}
    for name, s3 in (("plain", False), ("s3", True)):
        step(s3)  # warm-up (cuDNN autotuning, allocations)
        _sync(device)
        start = time.perf_counter()
        for _ in range(iters):
            step(s3)
        _sync(device)
        out[f"{name}_images_per_s"] = iters * batch / (time.perf_counter() - start)
    out["s3_cost_ratio"] = out["plain_images_per_s"] / out["s3_images_per_s"]
    out["parameters"] = count_parameters(net)
    out["trunk_parameters"] = trunk_parameters(net)
    if device.startswith("cuda"):
        out["peak_memory_gib"] = torch.cuda.max_memory_allocated() / 2 ** 30
    return out


def finetune_speed(device: str, width: float, size: int, iters: int) -> dict:
    from s3lib.finetune import FinetuneConfig, finetune
    from voc_fixture import write_voc_fixture

    with tempfile.TemporaryDirectory() as tmp:
        root = write_voc_fixture(Path(tmp), n_trainval=40, n_test=20, size=(320, 240))
        config = FinetuneConfig(task="voc2007", root=str(root), init="random", width=width,
                                steps=iters, size=size, device=device, workers=2,
                                bn_batches=2, threads=torch.get_num_threads())
        result = finetune(config, progress=False)
    return {"finetune_iters": result["steps"],
            "finetune_iters_per_s": result["steps"] / result["seconds"],
            "finetune_fixture_map": result["map"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--width", type=float, default=1.0)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--iters", type=int, default=20)
    parser.add_argument("--finetune-iters", type=int, default=300)
    parser.add_argument("--no-amp", action="store_true", help="float32 instead of bf16 autocast")
    args = parser.parse_args(argv)
    line = {"device": (torch.cuda.get_device_name() if args.device.startswith("cuda")
                       else "cpu"), "torch": torch.__version__, "width": args.width,
            "size": args.size, "batch": args.batch, "amp": "none" if args.no_amp else "bf16"}
    line.update(pretrain_speed(args.device, args.width, args.size, args.batch, args.iters,
                               not args.no_amp))
    line.update(finetune_speed(args.device, args.width, args.size, args.finetune_iters))
    print(json.dumps(line))
    return 0


if __name__ == "__main__":
    sys.exit(main())
