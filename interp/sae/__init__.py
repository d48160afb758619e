"""Sparse autoencoders on per-token activations: config, model, training, feature descriptions."""

from interp.sae.concepts import feature_table
from interp.sae.config import SAEConfig
from interp.sae.model import TopKSAE
from interp.sae.train import load_sae, read_sae_metadata, save_sae, train_sae

__all__ = ["SAEConfig", "TopKSAE", "feature_table", "load_sae", "read_sae_metadata", "save_sae", "train_sae"]
