"""Typed, validated options for search policies.

Each search policy declares one dataclass of options, derived from :class:`SearchConfig` (what the
driver needs: evaluation batch size, precision, mode, BN recalibration ...), and registers with
it (``@register_policy("mcq", config=MCQConfig)``). Every field says where its default comes
from (:func:`option`'s ``source``: the paper, the authors' code, or an *fxprune default* where the
sources are silent) and what values it takes. :func:`config_from_dict` turns a user's
``policy_config`` dict into the dataclass: an unknown key, a value of the wrong type or outside its
range is an :class:`~fxprune.errors.OptionError` that names the key, before any work is done.
Nested option groups (``post_training: FinetuneConfig``) take a dict; ``ALIASES`` maps flat legacy
names onto nested fields (``"kd_max_steps"`` → ``post_training.max_steps``). ``PRESETS`` names
sets of options: ``{"preset": "tuned", "fill": False}`` starts from the named set, and the keys the
user gives next to it win.
"""
from __future__ import annotations

import dataclasses
import math
import typing
from typing import Any

from ..errors import OptionError
from ..options import FXPRUNE_DEFAULT, option

PRECISIONS = ("fp32", "bf16")
EVAL_MODES = ("auto", "masked", "compact")
SCORES = ("accuracy", "likelihood")


@dataclasses.dataclass
class SearchConfig:
    """Options every search policy has (the driver reads them)."""

    batch_size: int = option(256, f"{FXPRUNE_DEFAULT}: evaluation batch size [U]", low=1)
    precision: str = option("fp32", f"{FXPRUNE_DEFAULT}: 'fp32'; 'bf16' runs plan evaluation under bfloat16 "
                            "autocast (3.5x faster on a CPU with AVX-512 BF16, 7-10x slower on an AVX2-only one: "
                            "evaluate_throughput.md) [U]",
                            choices=PRECISIONS)
    eval_mode: str = option("auto", f"{FXPRUNE_DEFAULT}: 'auto' scores the physically pruned network "
                            "('compact') on a CPU and zeroes channels of one working copy ('masked') on a GPU, "
                            "the faster of the two on each (scale_out.md) [U]", choices=EVAL_MODES)
    bn_recalib: int = option(8, f"{FXPRUNE_DEFAULT}: batches of a TRAIN calibration slice on which norm "
                             "statistics are re-estimated before a plan is scored (adaptive BN, EagleEye ECCV 2020); "
                             "0 scores with the original statistics (reward_fidelity.md) [U]", low=0)
    reward_score: str = option("likelihood", f"{FXPRUNE_DEFAULT}: what the search maximises on the reward split: "
                               "'likelihood', exp(-cross-entropy), or 'accuracy' (top-1). The likelihood ranks plans "
                               "by their accuracy after fine-tuning better (Spearman 0.71 vs 0.58 after "
                               "recalibration, reward_fidelity.md), and random search and mcq picked plans that "
                               "fine-tune better with it (cifar10_resnet56_cpu.md) [U]", choices=SCORES)
    reward_train_steps: int = option(0, f"{FXPRUNE_DEFAULT}: SGD steps a copy of each pruned candidate trains on "
                                     "fixed TRAIN batches before it is scored (the training probe, "
                                     "fxprune.search.probe); 0 scores right after pruning. 25 steps rank plans by "
                                     "their accuracy after fine-tuning far better (likelihood: Spearman 0.94 vs 0.71 "
                                     "on ResNet-56, reward_fidelity.md) at about 4x the cost per evaluation [U]",
                                     low=0)
    reward_train_lr: float = option(0.02, f"{FXPRUNE_DEFAULT}: the probe's peak learning rate (warm-up over 30% of "
                                    "its steps, cosine towards 0; SGD momentum 0.9, weight decay 5e-4) [U]",
                                    low=0.0, low_open=True)
    reward_train_batch: int = option(64, f"{FXPRUNE_DEFAULT}: samples per probe step [U]", low=1)
    bn_batch: int = option(64, f"{FXPRUNE_DEFAULT}: samples per recalibration batch [U]", low=1)
    taylor_samples: int = option(1024, f"{FXPRUNE_DEFAULT}: training samples for importance='taylor' [U]", low=1)

    ALIASES: typing.ClassVar[dict[str, str]] = {}
    PRESETS: typing.ClassVar[dict[str, dict[str, Any]]] = {}


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _type_ok(value: Any, hint: Any) -> tuple[bool, str]:
    """Is ``value`` of type ``hint`` (int, float, bool, str, X | None, nested dataclass)?"""
    origin = typing.get_origin(hint)
    if origin is typing.Union or str(origin) == "<class 'types.UnionType'>":
        args = typing.get_args(hint)
        if value is None and type(None) in args:
            return True, ""
        results = [_type_ok(value, a) for a in args if a is not type(None)]
        return any(ok for ok, _ in results), " or ".join(w for _, w in results) + (" or None" if type(None) in args else "")
    if hint is bool:
        return isinstance(value, bool), "a bool"
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool), "an integer"
    if hint is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        return ok and math.isfinite(float(value)), "a finite number"
    if hint is str:
        return isinstance(value, str), "a string"
    return True, ""


def _check(cls_name: str, key: str, value: Any, f: dataclasses.Field, hint: Any) -> Any:
    ok, want = _type_ok(value, hint)
    if not ok:
        raise OptionError(f"{cls_name} option '{key}'={value!r} must be {want} (got {type(value).__name__})")
    choices = f.metadata.get("choices")
    if choices is not None and value is not None and value not in choices:
        raise OptionError(f"{cls_name} option '{key}'={value!r} must be one of {list(choices)}")
    low, high, low_open, high_open = f.metadata.get("range", (None, None, False, False))
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if low is not None and (value < low or (low_open and value == low)):
            raise OptionError(f"{cls_name} option '{key}'={value!r} must be {'>' if low_open else '>='} {low}")
        if high is not None and (value > high or (high_open and value == high)):
            raise OptionError(f"{cls_name} option '{key}'={value!r} must be {'<' if high_open else '<='} {high}")
    if hint is float and isinstance(value, int):
        value = float(value)
    return value


def _preset(cls: type, key: Any) -> dict[str, Any]:
    presets = getattr(cls, "PRESETS", {})
    if not presets:
        raise OptionError(f"{cls.__name__} has no presets (option 'preset'={key!r})")
    if not isinstance(key, str) or key not in presets:
        raise OptionError(f"{cls.__name__}: unknown preset {key!r}; known: {sorted(presets)}")
    return dict(presets[key])


def config_from_dict(cls: type, data: Any, *, prefix: str = "") -> Any:
    """An instance of the options dataclass ``cls`` from a dict (see the module docstring)."""
    name = cls.__name__
    if data is None:
        return cls()
    if isinstance(data, cls):
        return data
    if not isinstance(data, dict):
        raise OptionError(f"{name}: options must be a dict of name -> value, got {type(data).__name__}")
    data = dict(data)
    if "preset" in data and not prefix:
        data = {**_preset(cls, data.pop("preset")), **data}
    nested: dict[str, dict] = {}
    for alias, target in getattr(cls, "ALIASES", {}).items():
        if alias in data:
            head, _, rest = target.partition(".")
            if rest:
                nested.setdefault(head, {})[rest] = data.pop(alias)
            else:
                data[head] = data.pop(alias)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise OptionError(f"unknown {name} option(s) {[prefix + k for k in unknown]}; known: "
                          f"{sorted(prefix + k for k in fields)}")
    hints = _hints(cls)
    kw: dict[str, Any] = {}
    for key, f in fields.items():
        hint = hints[key]
        if dataclasses.is_dataclass(hint):
            sub = data.get(key, {})
            if isinstance(sub, hint):
                sub = dataclasses.asdict(sub)
            if not isinstance(sub, dict):
                raise OptionError(f"{name} option '{prefix + key}' takes a dict of options, got {type(sub).__name__}")
            base = f.default_factory() if f.default_factory is not dataclasses.MISSING else hint()
            merged = {**dataclasses.asdict(base), **sub, **nested.get(key, {})}
            kw[key] = config_from_dict(hint, merged, prefix=f"{prefix}{key}.")
        elif key in data:
            kw[key] = _check(name, prefix + key, data[key], f, hint)
    try:
        return cls(**kw)
    except OptionError:
        raise
    except (TypeError, ValueError) as exc:  # a cross-field check of the dataclass itself
        raise OptionError(f"{name}: {exc}") from exc


def described(cfg: Any, prefix: str = "", parent_source: str = "", defaults: Any = None) -> dict[str, dict[str, Any]]:
    """Every option (nested ones dotted) with its value and source, for logs and reports: "user"
    where the value differs from the default, else the default's provenance (a nested option has
    its group's source, where the group's defaults come from)."""
    if defaults is None:
        try:
            defaults = type(cfg)()
        except TypeError:  # a config with required fields: no default to compare with
            defaults = cfg
    out: dict[str, dict[str, Any]] = {}
    for f in dataclasses.fields(cfg):
        value, default = getattr(cfg, f.name), getattr(defaults, f.name)
        source = parent_source or f.metadata.get("source", "")
        if dataclasses.is_dataclass(value):
            out.update(described(value, f"{prefix}{f.name}.", source, default))
        else:
            out[prefix + f.name] = {"value": value, "source": source if value == default else "user"}
    return out


def to_dict(cfg: Any) -> dict[str, Any]:
    """Plain JSON-able values (nested dataclasses as dicts)."""
    return dataclasses.asdict(cfg)
