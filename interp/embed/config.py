"""Settings of the embedding stages: the `embed` config section as a dataclass.

The defaults are those of the `embed` section of `workflow/schemas/config.schema.yaml`
(`tests/test_config_defaults.py` keeps them equal). The stages build it with
`interp.config.settings_from_section(EmbedConfig, params, ...)`: the embedding rules pass the section's keys
flat, `layers` resolved to the model's list, next to keys of their own that the stage names in `ignore`.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class EmbedConfig:
    """How the models embed windows (reference windows, cohort haplotype windows, variant alleles)."""

    layers: str | list[str] = "all"
    """layers to pool: "all" (every layer of the model card) or a list of layer names; the rules pass the
    resolved list of each model."""
    token_layers: list[str] = field(default_factory=list)
    """layers whose per-token activations are stored (zarr) for the SAEs; `sae.layer` is added by check_config."""
    batch_size: int = 64
    """sequences handed to the embedder at once (it batches them by token_budget)."""
    device: str = "cpu"
    """cpu, cuda or auto (cuda when available)."""
    dtype: str = "auto"
    """auto (bfloat16 on CUDA, float32 on CPU), float32, bfloat16 or float16."""
    token_budget: int | None = None
    """padded tokens per forward pass (rows x longest); None: 2048 on CPU, 16384 on CUDA."""
    hf_cache: str | None = None
    """Hugging Face cache folder for hub models (None: the HF_HUB_CACHE / HF_HOME default)."""
    cache: str | None = "results/cache/embeddings"
    """content-addressed cache of pooled cohort window embeddings, shared by runs (None: off)."""

    def model_options(self) -> dict:
        """Keyword arguments of `interp.embed.registry.make_embedder` beyond card, checkpoint and device."""
        return {"hf_cache": self.hf_cache, "dtype": self.dtype, "token_budget": self.token_budget}
