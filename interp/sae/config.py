"""Training configuration of a sparse autoencoder (one run of one architecture).

The defaults here are the defaults of the `sae` section of `workflow/schemas/config.schema.yaml`
(`tests/test_config_defaults.py` keeps them equal). `sae_settings` builds one from the whole section.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields

from interp.errors import InputError

#: keys of the `sae` section that other code reads (the rules, feature labels, steering, the atlas), not
#: training settings
NOT_TRAINING = ("layer", "sweep", "concepts", "labels", "top_windows", "steer", "atlas")
ARCHITECTURES = ("relu", "topk", "batchtopk", "jumprelu", "matryoshka")
B_DEC_INITS = ("geometric_median", "mean", "zero")


@dataclass
class SAEConfig:
    """Hyper-parameters of one SAE run. Inputs are rescaled so a token's mean squared norm is d_in,
    so learning rate and sparsity coefficients do not depend on the layer's activation scale."""

    architecture: str = "topk"
    """relu (ReLU + L1 penalty), topk, batchtopk, jumprelu (L0 penalty, straight-through
    estimator), or matryoshka (Matryoshka BatchTopK)."""
    n_features: int = 512
    """dictionary size F (number of features)."""
    k: int = 16
    """active features per token (topk), or on average per token in a batch (batchtopk, matryoshka)."""
    l1_coefficient: float = 0.1
    """relu: weight of the L1 penalty, the token mean of sum_f f_i / sqrt(d_in) (normalised units; decoder
    rows have unit norm, so this is also the decoder-norm-weighted L1), in units of the normalised MSE loss."""
    l0_coefficient: float = 0.01
    """jumprelu: weight of the L0 penalty (number of active features per token)."""
    jumprelu_bandwidth: float = 0.05
    """jumprelu: width of the rectangle kernel of the straight-through estimator (normalised units)."""
    jumprelu_init_threshold: float = 0.05
    """jumprelu: smallest initial threshold of a feature (normalised units); each starts at the (1 - k/F)
    quantile of its activations on the initialisation sample, at least this."""
    matryoshka_prefixes: list[float] = field(default_factory=lambda: [0.0625, 0.25, 1.0])
    """matryoshka: nested dictionary sizes as fractions of n_features (increasing, last 1.0); the
    loss is the mean reconstruction loss over these prefixes."""
    temporal_fraction: float = 0.0
    """share of the dictionary (its first features) trained with the temporal contrastive loss of
    T-SAE (Bhalla et al. 2025): pulled together on adjacent tokens of a window, apart across windows,
    so features can stand for spans (motif instances, islands); 0 turns it off."""
    temporal_coefficient: float = 1.0
    """weight of the temporal contrastive loss, in units of the normalised MSE loss."""
    temporal_temperature: float = 0.1
    """temperature of the temporal contrastive loss (InfoNCE on cosine similarity)."""
    temporal_gap: int = 1
    """tokens between the two members of a temporal pair (1: adjacent tokens, as in T-SAE)."""
    threshold_momentum: float = 0.99
    """batchtopk, matryoshka: momentum of the running inference threshold (mean over batches of the
    smallest activation BatchTopK kept), so inference does not depend on the batch."""
    threshold_calibration_tokens: int = 262_144
    """batchtopk, matryoshka: after training, the inference threshold is re-estimated with the final
    weights over this many training tokens, in whole shuffled batches of batch_size (rounded down, at least
    one batch); 0 keeps the running mean, which lags in short runs."""
    lr: float = 0.001
    """peak Adam learning rate."""
    lr_warmup_fraction: float = 0.05
    """share of training steps with a linear learning-rate warm-up from 0."""
    lr_decay_fraction: float = 0.2
    """share of training steps, at the end, with a linear decay to 0."""
    epochs: int = 8
    """passes over the training tokens."""
    batch_size: int = 512
    """tokens per optimiser step."""
    seed: int = 0
    """seed of initialisation, data order and the split (set from the run's `seed`)."""
    split_block_bases: int = 2000
    """genome blocks of this many bases are assigned whole to train / validation / test."""
    validation_fraction: float = 0.15
    """share of genome blocks in the validation split (label thresholds are chosen there)."""
    test_fraction: float = 0.15
    """share of genome blocks in the test split (held-out FVU, label precision/recall/F1)."""
    dead_after_tokens: int = 100_000
    """a feature silent for this many training tokens is dead and gets the AuxK loss."""
    auxk_alpha: float = 0.03125
    """weight of the AuxK loss (the top dead features reconstruct the residual); 0 disables it."""
    normalize_inputs: bool = True
    """rescale inputs so their mean squared norm is d_in (undone at decode)."""
    b_dec_init: str = "geometric_median"
    """decoder bias initialisation: geometric_median (Weiszfeld), mean, or zero, of a sample of
    training tokens."""
    init_sample_tokens: int = 8192
    """size of the training-token sample for the decoder-bias initialisation."""
    memory_budget_mb: float = 1024.0
    """training tokens are cached in memory when they fit, else streamed through one shuffle buffer of
    this size (plus a store chunk)."""
    checkpoint_every_steps: int = 200
    """write a resumable training state (safetensors) every this many steps."""

    def to_dict(self) -> dict:
        return asdict(self)

    def validate(self, source: str = "sae config") -> SAEConfig:
        """Raise InputError naming the offending field; return self."""
        def bad(name: str, expected: str) -> InputError:
            return InputError(f"{source}, field {name}: expected {expected}, got {getattr(self, name)!r}")

        for name in NUMBER_FIELDS:
            value = getattr(self, name)
            if not isinstance(value, int | float) or isinstance(value, bool):
                raise bad(name, "a number" + _text_number_hint(value))
        prefixes = self.matryoshka_prefixes
        if not isinstance(prefixes, list | tuple) or any(
                not isinstance(p, int | float) or isinstance(p, bool) for p in prefixes):
            raise bad("matryoshka_prefixes", "a list of numbers" + _text_number_hint(prefixes))
        if not isinstance(self.normalize_inputs, bool):
            raise bad("normalize_inputs", "true or false")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool) or self.seed < 0:
            raise bad("seed", "a non-negative integer")
        if self.architecture not in ARCHITECTURES:
            raise bad("architecture", f"one of {', '.join(ARCHITECTURES)}")
        if self.b_dec_init not in B_DEC_INITS:
            raise bad("b_dec_init", f"one of {', '.join(B_DEC_INITS)}")
        if (not isinstance(self.threshold_calibration_tokens, int) or isinstance(self.threshold_calibration_tokens, bool)
                or self.threshold_calibration_tokens < 0):
            raise bad("threshold_calibration_tokens", "a non-negative integer")
        for name in ("n_features", "k", "epochs", "batch_size", "split_block_bases", "dead_after_tokens",
                     "init_sample_tokens", "checkpoint_every_steps", "temporal_gap"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise bad(name, "a positive integer")
        if self.k > self.n_features:
            raise bad("k", f"at most n_features ({self.n_features})")
        # finite too: an infinite rate or coefficient trained to NaN weights without a word
        for name in ("lr", "jumprelu_bandwidth", "jumprelu_init_threshold", "memory_budget_mb"):
            if not (getattr(self, name) > 0 and math.isfinite(getattr(self, name))):
                raise bad(name, "a positive finite number")
        if not 0 <= self.temporal_fraction < 1:
            raise bad("temporal_fraction", "a number in [0, 1)")
        if self.temporal_fraction > 0 and round(self.temporal_fraction * self.n_features) < 1:
            raise bad("temporal_fraction", f"at least 1 / n_features ({1 / self.n_features:.3g}) when not 0")
        if self.temporal_fraction > 0 and self.batch_size < 4:
            raise bad("batch_size", "at least 4 with temporal_fraction > 0 (pairs need negatives)")
        if not (self.temporal_temperature > 0 and math.isfinite(self.temporal_temperature)):
            raise bad("temporal_temperature", "a positive finite number")
        for name in ("l1_coefficient", "l0_coefficient", "auxk_alpha", "temporal_coefficient"):
            if not (getattr(self, name) >= 0 and math.isfinite(getattr(self, name))):
                raise bad(name, "a non-negative finite number")
        for name in ("lr_warmup_fraction", "lr_decay_fraction"):
            if not 0 <= getattr(self, name) < 1:
                raise bad(name, "a number in [0, 1)")
        if self.lr_warmup_fraction + self.lr_decay_fraction > 1:
            raise bad("lr_decay_fraction", "lr_warmup_fraction + lr_decay_fraction <= 1")
        if not 0 < self.threshold_momentum < 1:
            raise bad("threshold_momentum", "a number strictly between 0 and 1")
        for name in ("validation_fraction", "test_fraction"):
            if not 0 < getattr(self, name) < 1:
                raise bad(name, "a number strictly between 0 and 1")
        if self.validation_fraction + self.test_fraction >= 1:
            raise bad("test_fraction", "validation_fraction + test_fraction < 1")
        if (not prefixes or any(not 0 < p <= 1 for p in prefixes) or prefixes[-1] != 1
                or any(b <= a for a, b in zip(prefixes, prefixes[1:], strict=False))):
            raise bad("matryoshka_prefixes", "increasing fractions in (0, 1] ending with 1.0")
        return self


#: the real-valued fields, read from the dataclass (`SAEConfig.validate` checks their type before their range)
NUMBER_FIELDS = tuple(f.name for f in fields(SAEConfig) if f.type == "float")


def _text_number_hint(value: object) -> str:
    """Advice where a number came as text: YAML 1.1 (PyYAML) reads 1e-3, without a decimal point, as a string."""
    try:
        float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return ""
    return " (YAML reads a number such as 1e-3 as text; write 1.0e-3 or 0.001)" if isinstance(value, str) else ""


def sae_settings(section: dict, *, seed: int = 0, ignore: tuple[str, ...] = (), source: str = "sae") -> SAEConfig:
    """The validated SAEConfig of a whole `sae` section (a sweep entry's keys merged over it) and the run's seed.

    Keys of NOT_TRAINING and `ignore` (a rule's params hold the section's training keys next to the job's own:
    model, log_dir, the seed) are skipped; any other key that is not a field raises InputError naming it and
    `source` (`interp.config.settings_from_section`).
    """
    from interp.config import settings_from_section

    cfg = settings_from_section(SAEConfig, section, ignore=(*NOT_TRAINING, *ignore), source=source, seed=seed)
    return cfg.validate(source)
