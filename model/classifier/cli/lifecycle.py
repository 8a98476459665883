"""A version's life cycle: ``publish``, ``evaluate``, ``promote`` and ``quantize``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from classifier.cli.common import add_store_args, fraction, refused, runtime_settings
from classifier.cli.output import Progress, format_evaluation


def cmd_publish(args: argparse.Namespace) -> int:
    from classifier.lifecycle.publish import PublishError, PublishRequest, publish_to_store
    from classifier.lifecycle.publish_s3 import publish_to_s3
    from classifier.store.layout import ModelStore

    activate = not args.no_activate
    if args.onnx is not None and args.arch is not None:
        return refused("--onnx publishes that file as it is: --arch is for torchvision architectures")
    request = PublishRequest(arch=args.arch or "resnet50", weights=args.weights, labels_file=args.labels,
                             preprocessing_file=args.preprocessing, onnx=args.onnx, name=args.name)
    try:
        if args.s3:
            manifest = publish_to_s3(args.s3, request, activate=activate)
        else:
            manifest = publish_to_store(ModelStore(args.store), request, activate=activate)
    except PublishError as exc:
        return refused(exc)
    labels = manifest["labels"]["count"]
    what = f"{manifest['name']} {manifest['version']} ({manifest['architecture']}"
    if args.s3:
        after = "makes it current" if activate else "installs it; `promote --s3` makes it current"
        print(f"uploaded {what}, {labels} labels) to {args.s3} (the installer Lambda {after})")
    else:
        state = "it is now current" if activate else "installed, not current (promote it when it is ready)"
        print(f"published {what}, source {manifest['source']}, {labels} labels) to {args.store}; {state}")
    if not manifest["trained"]:
        print("WARNING: this model is UNTRAINED (random weights): its predictions are meaningless.",
              file=sys.stderr)
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    import json

    from classifier.lifecycle.evaluate import DataSet, EvaluationError, evaluate
    from classifier.serving.imaging import ignored_text
    from classifier.store.layout import ModelStore
    from classifier.store.manifest import StoreError

    settings = runtime_settings(args)
    store = ModelStore(args.store)
    try:
        version = args.version or store.current(args.name)
        if version is None:
            raise EvaluationError(f"model {args.name} has no current version: pass --version")
        which = f"{args.name} {version}" + ("" if args.version else " (the current version; --version picks another)")
        data = DataSet.scan(args.data, store.labels(args.name, version), model=which)
        if data.ignored:
            print(f"{args.data}: {len(data.samples)} images; {ignored_text(data.ignored)}", file=sys.stderr)
        with Progress(len(data.samples), "evaluating", enabled=not args.json) as progress:
            report = evaluate(store, settings, version, data, compare=args.compare, progress=progress.advance_to)
    except (EvaluationError, StoreError) as exc:
        return refused(exc)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(format_evaluation(report))
    return 0


def cmd_promote(args: argparse.Namespace) -> int:
    from classifier.lifecycle.evaluate import DataSet, EvaluationError, evaluate
    from classifier.store.layout import ModelStore
    from classifier.store.manifest import StoreError

    if (args.data is None) != (args.min_top1 is None):
        return refused("a gate needs both --data DIR and --min-top1 X")
    if args.s3:
        if args.data is not None:
            return refused("gate a promotion on a local store (evaluate there first); --s3 only sends the "
                           "promotion to the installer")
        return promote_s3(args)
    store = ModelStore(args.store)
    try:
        labels = store.labels(args.name, args.version)
        if args.data is not None:
            data = DataSet.scan(args.data, labels, model=f"{args.name} {args.version}")
            report = store.evaluation(args.name, args.version, data.sha256)
            if report is None:
                with Progress(len(data.samples), "evaluating") as progress:
                    report = evaluate(store, runtime_settings(args), args.version, data, progress=progress.advance_to)
            if report["top1"] < args.min_top1:
                return refused(f"{args.name} {args.version} scores top-1 {report['top1']:.4f} on {args.data} "
                               f"({report['images']} images), below --min-top1 {args.min_top1}; CURRENT is unchanged",
                               status=1)
            print(f"gate passed: top-1 {report['top1']:.4f} >= {args.min_top1} on {report['images']} images")
        switch = store.set_current(args.name, args.version, reason="promote")
    except (EvaluationError, StoreError) as exc:
        return refused(exc)
    if switch is None:
        print(f"{args.name}: {args.version} is already current; nothing changed")
    else:
        print(f"{args.name}: current version is now {args.version} (was {switch.previous})")
    return 0


def promote_s3(args: argparse.Namespace) -> int:
    from classifier.lifecycle.publish import PublishError
    from classifier.lifecycle.publish_s3 import promote_in_inbox

    try:
        key = promote_in_inbox(args.s3, args.name, args.version)
    except PublishError as exc:
        return refused(exc)
    print(f"wrote s3 key {key}: the installer Lambda makes {args.name} {args.version} current")
    return 0


def cmd_quantize(args: argparse.Namespace) -> int:
    from classifier.lifecycle.quantize import QuantizeError, measured, quantize
    from classifier.serving.imaging import ignored_text
    from classifier.store.layout import ModelStore
    from classifier.store.manifest import StoreError

    try:
        manifest = quantize(ModelStore(args.store), args.name, args.version, calibration=args.calibration,
                            activate=not args.no_activate, force=args.force)
    except (QuantizeError, StoreError) as exc:
        return refused(exc)
    calibration = manifest["quantization"]["calibration"]
    if calibration.get("ignored"):
        print(f"calibration: {calibration['images']} images; {ignored_text(calibration['ignored'])}", file=sys.stderr)
    size = manifest["artifacts"]["model.onnx"]["bytes"] / 1e6
    verification = manifest["verification"]
    held_back = not args.no_activate and not args.force and verification["drift"]
    state = ("it is now current" if not args.no_activate and not held_back else
             "installed, NOT made current (it drifts from fp32; see below)" if held_back else "installed, not current")
    print(f"quantized {manifest['derived_from']} into {manifest['version']} (int8, {size:.0f} MB); {state}. "
          f"{measured(verification)}. Measure it on your data with "
          f"`evaluate --data DIR --version {manifest['version']} --compare {manifest['derived_from']}`"
          + (", then `promote` it" if held_back else ""))
    for problem in verification["drift"]:
        print(f"WARNING: {problem}", file=sys.stderr)
    if "forced" in verification:
        print(f"WARNING (installed with --force): {verification['forced']}", file=sys.stderr)
    return 0


def register(sub: Any) -> None:
    """Add this module's commands to the CLI's subparsers."""
    p = sub.add_parser("publish", help="build a torchvision classifier (or take an ONNX file), check it, "
                                       "install it as current")
    add_store_args(p, name_default="the architecture's name, or the ONNX file's")
    p.add_argument("--arch", metavar="NAME",
                   help="any torchvision classification builder: resnet50 (default), mobilenet_v3_large, "
                        "efficientnet_b0, convnext_tiny, vit_b_16, regnet_y_400mf, ...")
    p.add_argument("--s3", metavar="s3://bucket/prefix",
                   help="upload to the model inbox bucket instead of a local store")
    p.add_argument("--weights", metavar="WEIGHTS",
                   help="a weights name of the architecture (IMAGENET1K_V1, ...; default: its DEFAULT), "
                        "a .pth/.safetensors state dict, or random")
    p.add_argument("--labels", type=Path, metavar="FILE",
                   help="the model's labels: .txt (a label a line) or .json (a list), one per output of its "
                        "final layer")
    p.add_argument("--preprocessing", type=Path, metavar="FILE",
                   help="JSON: resize, crop, interpolation, mean, std, scale, channel_order, layout, output "
                        "(default: the weights' own transforms; required with --onnx)")
    p.add_argument("--onnx", type=Path, metavar="FILE",
                   help="publish this ONNX image classifier as it is (with --labels and --preprocessing)")
    p.add_argument("--no-activate", action="store_true", help="install the version without making it current")
    p.set_defaults(func=cmd_publish)

    p = sub.add_parser("evaluate", help="accuracy and latency of a version on DIR/<label>/<images>")
    add_store_args(p)
    p.add_argument("--data", type=Path, required=True, metavar="DIR", help="an ImageFolder: DIR/<label>/<images>")
    p.add_argument("--version", help="the version to evaluate (default: the current one)")
    p.add_argument("--compare", metavar="VERSION", help="also report top-1 agreement and top-5 overlap with it")
    p.add_argument("--json", action="store_true", help="print the report alone, as JSON")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("promote", help="make VERSION current, optionally only if it passes an accuracy gate")
    add_store_args(p)
    p.add_argument("version", metavar="VERSION", help="the installed version to make current (`models` lists them)")
    p.add_argument("--data", type=Path, metavar="DIR", help="the gate's data set (an ImageFolder)")
    p.add_argument("--min-top1", type=fraction, metavar="X",
                   help="refuse below this top-1 accuracy, a fraction from 0 to 1 (0.9 for 90%%)")
    p.add_argument("--s3", metavar="s3://bucket/prefix",
                   help="ask the installer Lambda to promote it (the model inbox bucket)")
    p.set_defaults(func=cmd_promote)

    p = sub.add_parser("quantize", help="derive an int8 version (ONNX Runtime static quantization)")
    add_store_args(p)
    p.add_argument("--version", help="the fp32 version to quantize (default: the current one)")
    p.add_argument("--calibration", type=Path, metavar="DIR", help="calibration images (default: bundled photos)")
    p.add_argument("--no-activate", action="store_true", help="install the int8 version without making it current")
    p.add_argument("--force", action="store_true",
                   help="install a vision transformer's int8 version, and make a version that drifts from fp32 "
                        "current (without it, such a version is installed but not made current)")
    p.set_defaults(func=cmd_quantize)
