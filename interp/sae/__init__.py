"""Sparse autoencoders on per-token activations: config, architectures, training, splits, labels."""

from interp.sae.batchtopk import BatchTopKSAE
from interp.sae.config import SAEConfig
from interp.sae.jumprelu import JumpReLUSAE
from interp.sae.matryoshka import MatryoshkaSAE
from interp.sae.model import SparseAutoencoder
from interp.sae.relu import ReLUSAE
from interp.sae.topk import TopKSAE
from interp.sae.train import load_sae, read_sae_metadata, save_sae, train_sae

__all__ = ["BatchTopKSAE", "JumpReLUSAE", "MatryoshkaSAE", "ReLUSAE", "SAEConfig", "SparseAutoencoder",
           "TopKSAE", "load_sae", "read_sae_metadata", "save_sae", "train_sae"]
