"""The ``fxprune`` command line (also ``python -m fxprune``).

With no arguments it runs the default job: prune a torchvision ResNet-18 (``weights=None``) to 50%
FLOPs and print the report.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from .errors import FxpruneError, LatencyCheckError

EXAMPLES = """examples:
  fxprune                                          # prune resnet18 to 50% FLOPs, print the report
  fxprune prune mobilenet_v2 --budget 0.3 --round-to 8 --onnx mnv2.onnx --report out/
  fxprune prune resnet50 --budget latency=0.6      # 60% of the original ONNX Runtime latency
  fxprune prune resnet18 --budget params=0.4 --policy uniform --save r18.safetensors
  fxprune prune r18.safetensors --budget 0.8        # prune a saved fxprune model further
  fxprune prune cifar_resnet56 --weights r56.th --policy ppo --data cifar10/ --normalize cifar10 \
      --save r56-ppo.safetensors                    # learned search, scored on a reward split of train.npz
  fxprune analyze inception_v3 --input 1,3,299,299  # groups, sizes and why pinned
  fxprune export r18.safetensors r18.onnx           # export + ONNX Runtime parity check
  fxprune bench original.onnx pruned.onnx --threads 2 --runs 100
"""


def _shape(text: str | None) -> tuple[int, ...] | None:
    if text is None:
        return None
    try:
        shape = tuple(int(s) for s in text.replace("x", ",").split(","))
    except ValueError:
        raise FxpruneError(f"--input '{text}' is not a shape such as 1,3,224,224") from None
    if not shape or min(shape) <= 0:
        raise FxpruneError(f"--input '{text}' must list positive sizes, e.g. 1,3,224,224")
    return shape


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr and exit status 2."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="fxprune", description="Structured channel pruning for PyTorch CNNs.",
                epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--debug", action="store_true", help="show tracebacks and debug logging")
    sub = p.add_subparsers(dest="cmd", metavar="{prune,analyze,export,bench}", parser_class=_Parser)
    model_help = "a torchvision model name (timm names when timm is installed) or a saved .safetensors file"

    s = sub.add_parser("prune", help="prune a model to a budget", epilog=EXAMPLES,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    s.add_argument("model", nargs="?", default="resnet18", help=model_help)
    s.add_argument("--budget", default="0.5", help="FLOPs fraction (0.5) or METRIC=VALUE with METRIC in "
                   "flops, params, channels, latency (fraction), latency_ms (default 0.5)")
    s.add_argument("--policy", default="global", help="global (default), uniform, or a registered policy")
    s.add_argument("--importance", default="l2", help="l2 (default), l1, bn, random")
    s.add_argument("--round-to", type=int, default=None, help="keep channel counts at multiples of N")
    s.add_argument("--input", default=None, help="example input shape, e.g. 1,3,224,224 (default per model)")
    s.add_argument("--weights", default=None, help="load these weights into the model built by name (.safetensors, "
                   "or a PyTorch state dict read with weights_only=True)")
    s.add_argument("--onnx", default=None, help="export the pruned model here (checked in ONNX Runtime)")
    s.add_argument("--report", default=None, help="write report.md, report.json and PNG plots into this folder")
    s.add_argument("--no-latency", action="store_true", help="with --report: skip the latency measurement")
    s.add_argument("--save", default=None, help="write the pruned model (safetensors + plan JSON)")
    s.add_argument("--threads", type=int, default=1, help="ONNX Runtime threads for latency (default 1)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--data", default=None, help="search policies: a folder with train.npz (x: uint8 NxHxWxC, "
                   "y: labels), e.g. CIFAR-10; the reward split is held out of it")
    s.add_argument("--normalize", default="imagenet", choices=["imagenet", "cifar10", "none"],
                   help="normalisation of --data images (default imagenet)")
    s.add_argument("--policy-config", default=None, help="search policies: options as JSON, e.g. '{\"rounds\": 2}'")
    s.add_argument("--run-dir", default=None, help="search policies: the run folder (log, checkpoints)")
    s.add_argument("--max-evals", type=int, default=None, help="search policies: cap on evaluations")
    s.add_argument("--n-reward", type=int, default=1000, help="search policies: reward samples (default 1000)")
    s.add_argument("--no-resume", action="store_true", help="search policies: start the run afresh")
    s.add_argument("--device", default=None, help="search policies: evaluation/training device, e.g. cuda")
    s.add_argument("--backend", default=None, choices=["local", "processes", "ray"],
                   help="search policies: where plan evaluations run (default local; ray: $RAY_ADDRESS or a local cluster)")
    s.add_argument("--workers", type=int, default=None, help="search policies: worker processes / Ray actors")

    s = sub.add_parser("analyze", help="print the channel groups, their sizes and why any is pinned")
    s.add_argument("model", help=model_help)
    s.add_argument("--input", default=None, help="example input shape (default per model)")

    s = sub.add_parser("export", help="export a model to ONNX and check it in ONNX Runtime")
    s.add_argument("model", help=model_help)
    s.add_argument("output", help="the .onnx file to write")
    s.add_argument("--input", default=None, help="example input shape (default per model)")
    s.add_argument("--opset", type=int, default=None)
    s.add_argument("--exporter", default="auto", choices=["auto", "torchscript", "dynamo"])
    s.add_argument("--static-batch", action="store_true", help="fix the batch dim instead of making it dynamic")

    s = sub.add_parser("bench", help="ONNX Runtime latency of one model, or of two compared interleaved")
    s.add_argument("a", help="an .onnx file")
    s.add_argument("b", nargs="?", default=None, help="a second .onnx file to compare with the first")
    s.add_argument("--threads", type=int, default=1)
    s.add_argument("--batch", type=int, default=1)
    s.add_argument("--warmup", type=int, default=10)
    s.add_argument("--runs", type=int, default=50)
    s.add_argument("--min-speedup", type=float, default=None, help="exit 1 unless B is at least this much faster")
    s.add_argument("--no-spinning", action="store_true",
                   help="turn off ONNX Runtime's thread spinning (session.intra_op.allow_spinning=0)")
    s.add_argument("--json", action="store_true", help="print JSON instead of text")
    return p


def _load_model(spec: str, shape, weights: str | None = None):
    """(model, example input shape, arch spec or None, saved result or None); ``weights``: a
    weights file for a model built by name."""
    import fxprune
    from .zoo import build_model, default_input_shape, spec_of

    if spec.endswith(".safetensors") or Path(spec).is_file():
        if weights:
            raise FxpruneError(f"--weights is for a model built by name; '{spec}' is a saved fxprune model with "
                               "its own weights")
        meta = fxprune.api.read_metadata(spec)
        res = fxprune.load(spec)
        saved_shape = tuple(res.plan.input_shapes[0]) if res.plan.input_shapes else None
        return res.model, shape or saved_shape, meta.get("arch"), res
    model = build_model(spec)
    if weights:
        from .models import load_weights

        load_weights(model, weights)
    return model, shape or default_input_shape(spec), spec_of(spec), None


def _cmd_prune(args) -> int:
    from tqdm.auto import tqdm

    import fxprune
    from .budget import parse

    budget = parse(args.budget)
    model, shape, arch, _ = _load_model(args.model, _shape(args.input), args.weights)
    search = _search_args(args)
    for out in (args.onnx, args.save):  # every output must be writable before any work is done
        if out:
            _writable_folder(Path(out).parent, f"the folder of '{out}'")
    if args.report:
        _writable_folder(Path(args.report), f"--report '{args.report}'")
    steps = 1 + bool(args.onnx) + bool(args.report) + bool(args.save)
    with tqdm(total=steps, desc="fxprune", disable=steps == 1, leave=False) as bar:
        result = fxprune.prune(model, budget, example_inputs=shape, policy=args.policy,
                               importance=args.importance, round_to="auto" if args.round_to is None else args.round_to,
                               seed=args.seed, latency_threads=args.threads, **search)
        bar.update()
        if args.onnx:
            bar.set_postfix_str("export")
            exp = fxprune.export_onnx(result, args.onnx)
            bar.update()
        if args.report:
            bar.set_postfix_str("report")
            if not args.no_latency and result.report.latency_after_ms is None:
                chk = fxprune.check_latency(model, result, shape, threads=args.threads, runs=30,
                                            workdir=args.report)
                r = result.report
                r.latency_before_ms, r.latency_after_ms = chk.before_ms, chk.after_ms
                a = chk.comparison.a
                r.latency_settings = {"provider": a.provider, "intra-op threads": a.threads,
                                      "graph optimization": a.graph_optimization_level, "batch": a.batch,
                                      "runs": a.runs, "interleaved": True}
            result.report.save(args.report)
            bar.update()
        if args.save:
            fxprune.save(result, args.save, arch=arch)
            bar.update()
    print(result.report)
    if args.onnx:
        print(f"exported {exp}")
    if args.report:
        print(f"report written to {args.report}/report.md (+ report.json, kept_channels.png, flops_share.png)")
    if args.save:
        print(f"saved to {args.save}")
    return 0


def _writable_folder(folder: Path, what: str) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / ".fxprune-write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise FxpruneError(f"cannot write {what}: {exc.strerror or exc}") from None


def _search_args(args) -> dict:
    """The search options of ``prune`` from the command line (only those given)."""
    out = {}
    if args.data:
        from .data import load_npz_folder

        out["data"] = load_npz_folder(args.data, "train", None if args.normalize == "none" else args.normalize)
    if args.policy_config:
        try:
            out["policy_config"] = json.loads(args.policy_config)
        except json.JSONDecodeError as exc:
            raise FxpruneError(f"--policy-config is not valid JSON: {exc}") from None
        if not isinstance(out["policy_config"], dict):
            raise FxpruneError("--policy-config must be a JSON object, e.g. '{\"rounds\": 2}'")
    for name in ("run_dir", "max_evals", "device", "backend", "workers"):
        if getattr(args, name) is not None:
            out[name] = getattr(args, name)
    if args.n_reward != 1000:
        out["n_reward"] = args.n_reward
    if args.no_resume:
        out["resume"] = False
    return out


def _cmd_analyze(args) -> int:
    import fxprune

    model, shape, _, _ = _load_model(args.model, _shape(args.input))
    print(fxprune.analyze(model, shape).summary(max_rows=None))
    return 0


def _cmd_export(args) -> int:
    import fxprune

    model, shape, _, _ = _load_model(args.model, _shape(args.input))
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    res = fxprune.export_onnx(model, args.output, shape, opset=args.opset, dynamic_batch=not args.static_batch,
                              exporter=args.exporter)
    print(f"exported {res}")
    return 0


def _cmd_bench(args) -> int:
    import dataclasses

    from .export import compare_latency, measure_latency

    kw = dict(threads=args.threads, batch=args.batch, warmup=args.warmup, runs=args.runs, progress=True,
              spinning=not args.no_spinning)
    if args.b is None:
        lat = measure_latency(args.a, **kw)
        print(json.dumps(dataclasses.asdict(lat), indent=1) if args.json else lat)
        return 0
    cmp = compare_latency(args.a, args.b, **kw)
    if args.json:
        print(json.dumps({"a": dataclasses.asdict(cmp.a), "b": dataclasses.asdict(cmp.b), "speedup": cmp.speedup},
                         indent=1))
    else:
        print(cmp)
    if args.min_speedup is not None and cmp.speedup < args.min_speedup:
        raise LatencyCheckError(f"speedup {cmp.speedup:.3f}x is below the required {args.min_speedup}x")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.cmd is None:
        args = parser.parse_args(["prune"] + (["--debug"] if args.debug else []))
    if args.debug:
        logging.basicConfig(level=logging.DEBUG, format="%(name)s: %(message)s")
    try:
        return {"prune": _cmd_prune, "analyze": _cmd_analyze, "export": _cmd_export, "bench": _cmd_bench}[args.cmd](args)
    except LatencyCheckError as exc:
        if args.debug:
            raise
        print(f"fxprune: latency check failed: {exc}", file=sys.stderr)
        return 1
    except (FxpruneError, OSError) as exc:  # bad input: a model, a budget, a file, an option
        if args.debug:
            raise
        print(f"fxprune: error: {_first_line(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("fxprune: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - a bug: one line, the traceback with --debug
        if args.debug:
            raise
        print(f"fxprune: internal error: {type(exc).__name__}: {_first_line(exc)} (run with --debug for the "
              "traceback)", file=sys.stderr)
        return 1


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    if isinstance(exc, OSError) and exc.filename:
        text = f"{exc.strerror or text}: '{exc.filename}'"
    return text.splitlines()[0] if text else type(exc).__name__


if __name__ == "__main__":
    sys.exit(main())
