"""``python -m fxprune`` / ``fxprune``: prune a torchvision model (default: ResNet-18, weights=None,
to 50% FLOPs) and print the report. The full CLI (bench, export, reports) grows from here."""
from __future__ import annotations

import argparse
import sys

from .errors import FxpruneError


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="fxprune", description=__doc__,
        epilog="examples:\n  python -m fxprune\n  python -m fxprune prune mobilenet_v2 --budget 0.3 "
               "--policy uniform --round-to 8 --save out.safetensors\n  python -m fxprune analyze resnet50",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd")
    for name in ("prune", "analyze"):
        s = sub.add_parser(name)
        s.add_argument("model", nargs="?", default="resnet18", help="a torchvision model name")
        s.add_argument("--input", default="1,3,224,224", help="example input shape (default 1,3,224,224)")
        if name == "prune":
            s.add_argument("--budget", type=float, default=0.5, help="fraction of FLOPs to keep")
            s.add_argument("--policy", default="global")
            s.add_argument("--importance", default="l2")
            s.add_argument("--round-to", type=int, default=None)
            s.add_argument("--save", default=None, help="write the pruned model (safetensors + plan)")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    cmd = args.cmd or "prune"
    if args.cmd is None:
        args = _parser().parse_args(["prune"] + (["--debug"] if args.debug else []))
    try:
        import torchvision

        import fxprune

        try:
            shape = tuple(int(s) for s in args.input.split(","))
        except ValueError:
            raise FxpruneError(f"--input '{args.input}' is not a shape such as 1,3,224,224") from None
        if args.model not in torchvision.models.list_models(module=torchvision.models):
            raise FxpruneError(f"unknown model '{args.model}' (a torchvision model name, e.g. resnet18)")
        model = torchvision.models.get_model(args.model, weights=None).eval()
        if cmd == "analyze":
            print(fxprune.analyze(model, shape).summary(max_rows=None))
            return 0
        result = fxprune.prune(model, args.budget, example_inputs=shape, policy=args.policy,
                               importance=args.importance, round_to=args.round_to)
        print(result.report)
        if args.save:
            fxprune.save(result, args.save)
            print(f"saved to {args.save}")
        return 0
    except FxpruneError as exc:
        if args.debug:
            raise
        print(f"fxprune: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
