"""Settings of the built-in LM `tiny-dnalm`: its architecture (`TinyLMConfig`), training defaults, and how a
model card's `architecture` / `training` and the config's overrides (`lm.overrides`, `planted.lm_overrides`)
combine (`resolve_settings`).

Free of torch, so that `interp.config.check_config` can refuse a misspelt override before any rule runs.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

from interp.errors import InputError


@dataclass
class TinyLMConfig:
    """Architecture. max_len is the context in bases (= tokens)."""

    d_model: int = 128
    n_layers: int = 6
    n_heads: int = 4
    d_ff: int = 512
    dropout: float = 0.1
    max_len: int = 256
    conv_kernel: int = 0
    """width (odd) of a depthwise Conv1d local mixer, a residual branch ahead of each block's attention; 0 = none."""

    def __post_init__(self) -> None:
        if self.conv_kernel < 0 or (self.conv_kernel and self.conv_kernel % 2 == 0):
            raise ValueError(f"conv_kernel must be 0 or a positive odd number, got {self.conv_kernel}")

    def to_dict(self) -> dict:
        """The fields; options left at their off value are left out, so a checkpoint of the original
        architecture carries the same metadata (and bytes) as before the option existed."""
        out = asdict(self)
        if not self.conv_kernel:
            del out["conv_kernel"]
        return out


TRAINING_DEFAULTS = {
    "seq_len": 128,
    "batch_size": 32,
    "max_steps": 300,
    "lr": 1e-3,
    "weight_decay": 0.01,
    "warmup_steps": 30,
    "min_lr_ratio": 0.1,
    "mask_prob": 0.15,
    "n_mask_groups": 7,
    "eval_batch_size": 32,
    "reverse_complement": 0.0,
    "mask_span": 1,
}
"""reverse_complement: probability that a training crop is read on the other strand (reverse complement);
0 (default) draws nothing, so training is bit for bit what it was before the option existed.
mask_span: bases per masked span (SpanBERT-style, fixed length); about mask_prob of the bases are masked in
spans of this many contiguous bases, so a masked base's neighbours are often masked too and the model must
infer it from further away. 1 (default) is BERT's per-base masking, bit for bit as before the option."""


#: (kind, low, high, low_inclusive) of every numeric setting: a wrong type or range is refused by the config
#: check, before any rule runs, instead of failing inside torch after the windows are built
_VALUE_RULES = {
    "d_model": ("int", 1, None, True), "n_layers": ("int", 1, None, True), "n_heads": ("int", 1, None, True),
    "d_ff": ("int", 1, None, True), "max_len": ("int", 1, None, True), "conv_kernel": ("int", 0, None, True),
    "dropout": ("float", 0.0, 1.0, True),
    "seq_len": ("int", 1, None, True), "batch_size": ("int", 1, None, True), "max_steps": ("int", 1, None, True),
    "warmup_steps": ("int", 0, None, True), "n_mask_groups": ("int", 1, None, True),
    "eval_batch_size": ("int", 1, None, True), "mask_span": ("int", 1, None, True),
    "lr": ("float", 0.0, None, False), "weight_decay": ("float", 0.0, None, True),
    "min_lr_ratio": ("float", 0.0, 1.0, True), "mask_prob": ("float", 0.0, 1.0, False),
    "reverse_complement": ("float", 0.0, 1.0, True),
}


def _check_value(where: str, key: str, value) -> None:
    """Refuse a setting of the wrong type or outside its range (`_VALUE_RULES`), naming the field."""
    kind, low, high, low_inclusive = _VALUE_RULES[key]
    is_int = isinstance(value, int) and not isinstance(value, bool)
    ok_type = is_int or (kind == "float" and isinstance(value, float))
    hint = ""
    if isinstance(value, str):
        hint = (" (text: write it without quotes)" if kind == "int" else
                " (text: write 0.001 or 1.0e-3; YAML reads 1e-3, without a dot, as a string)")
    expected = {"int": "an integer", "float": "a number"}[kind]
    if high is None:
        bounds = f" {'>=' if low_inclusive else '>'} {low}"
    else:
        bounds = f" in {'[' if low_inclusive else '('}{low}, {high}]"
    if not ok_type:
        raise InputError(f"{where}{key}: expected {expected}{bounds}, got {value!r}{hint}")
    if kind == "float" and not math.isfinite(value):
        raise InputError(f"{where}{key}: expected {expected}{bounds}, got {value!r}")
    if (value < low if low_inclusive else value <= low) or (high is not None and value > high):
        raise InputError(f"{where}{key}: expected {expected}{bounds}, got {value!r}")


def resolve_settings(card: dict, overrides: dict) -> tuple[TinyLMConfig, dict]:
    """Merge card `architecture`/`training` with `overrides` (any key of either section); every numeric
    setting is checked for type and range (`_VALUE_RULES`)."""
    arch_keys = {f.name for f in fields(TinyLMConfig)}
    arch = dict(card.get("architecture") or {})
    train = {**TRAINING_DEFAULTS, **(card.get("training") or {})}
    for key, value in (overrides or {}).items():
        if key in arch_keys:
            arch[key] = value
        elif key in TRAINING_DEFAULTS:
            train[key] = value
        else:
            raise InputError(f"{card.get('name', 'model card')}: unknown override '{key}'; expected one of "
                             f"{sorted(arch_keys | set(TRAINING_DEFAULTS))}")
    unknown = set(arch) - arch_keys
    if unknown:
        raise InputError(f"{card.get('name', 'model card')}, field architecture: unknown keys {sorted(unknown)}")
    unknown = set(card.get("training") or {}) - set(TRAINING_DEFAULTS)
    if unknown:  # a misspelt key (max_stpes) would otherwise leave its default in force, unsaid
        raise InputError(f"{card.get('name', 'model card')}, field training: unknown keys {sorted(unknown)}; "
                         f"expected some of {sorted(TRAINING_DEFAULTS)}")
    name = card.get('name', 'model card')
    given = overrides or {}
    for section, values in (("architecture", arch), ("training", train)):
        for key, value in values.items():
            if key in _VALUE_RULES:
                _check_value(f"{name}, override " if key in given else f"{name}, field {section}.", key, value)
    if arch.get("d_model", TinyLMConfig.d_model) % arch.get("n_heads", TinyLMConfig.n_heads):
        raise InputError(f"{name}, field architecture: d_model {arch.get('d_model', TinyLMConfig.d_model)} is not "
                         f"divisible by n_heads {arch.get('n_heads', TinyLMConfig.n_heads)}")
    try:
        cfg = TinyLMConfig(**arch)
    except ValueError as err:
        raise InputError(f"{card.get('name', 'model card')}, field architecture: {err}") from err
    if int(train["mask_span"]) < 1:
        raise InputError(f"{card.get('name', 'model card')}, field training.mask_span: expected an integer >= 1, "
                         f"got {train['mask_span']}")
    if train["seq_len"] != cfg.max_len:
        # crops sit at positions 0..seq_len-1: a shorter seq_len leaves the learned position embeddings past
        # it untrained, yet embedding, scoring, loss recovered and steering all run max_len windows
        raise InputError(f"{card.get('name', 'model card')}, field training.seq_len: {train['seq_len']} "
                         f"{'exceeds' if train['seq_len'] > cfg.max_len else 'is shorter than'} architecture.max_len "
                         f"{cfg.max_len}; set both to the same length (lm.overrides: {{max_len: N, seq_len: N}})")
    return cfg, train
