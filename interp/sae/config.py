"""Training configuration of a sparse autoencoder."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from interp.errors import InputError


@dataclass
class SAEConfig:
    """Hyper-parameters of one TopK SAE run.

    n_features: dictionary size F; k: active features per token; lr: Adam learning rate (inputs are
    normalised to mean squared norm d, so it does not depend on the activation scale); epochs: passes
    over the training tokens; batch_size: tokens per step; heldout_fraction: share of windows (not
    tokens) kept out for evaluation; dead_after_tokens: a feature silent for this many training
    tokens counts as dead and gets the AuxK loss; auxk_alpha: weight of that loss (0 disables it);
    memory_budget_mb: training tokens are cached in memory when they fit, otherwise streamed from
    the store through a shuffle buffer of this size.
    """

    architecture: str = "topk"
    n_features: int = 1024
    k: int = 16
    lr: float = 1e-3
    epochs: int = 10
    batch_size: int = 1024
    seed: int = 0
    heldout_fraction: float = 0.1
    dead_after_tokens: int = 200_000
    auxk_alpha: float = 1 / 32
    normalize_inputs: bool = True
    memory_budget_mb: float = 1024.0

    def to_dict(self) -> dict:
        return asdict(self)

    def validate(self, source: str = "sae config") -> SAEConfig:
        """Raise InputError naming the offending field; return self."""
        def bad(field: str, expected: str) -> InputError:
            return InputError(f"{source}, field {field}: expected {expected}, got {getattr(self, field)!r}")

        if self.architecture != "topk":
            raise bad("architecture", '"topk"')
        for name in ("n_features", "k", "epochs", "batch_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise bad(name, "a positive integer")
        if self.k > self.n_features:
            raise bad("k", f"at most n_features ({self.n_features})")
        if not self.lr > 0:
            raise bad("lr", "a positive number")
        if not 0 < self.heldout_fraction < 1:
            raise bad("heldout_fraction", "a number strictly between 0 and 1")
        if self.dead_after_tokens < 1:
            raise bad("dead_after_tokens", "a positive integer")
        if self.auxk_alpha < 0:
            raise bad("auxk_alpha", "a non-negative number")
        if not self.memory_budget_mb > 0:
            raise bad("memory_budget_mb", "a positive number of megabytes")
        return self
