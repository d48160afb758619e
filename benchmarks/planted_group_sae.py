"""Experiment, not a pipeline architecture: a group-sparse TopK SAE on an existing planted run's tokens, its groups
scored as single features against the planted match target.

The README's planted calibration estimated (from the supervised principal subspaces of each motif type) that a
dictionary whose unit is a group of g features firing together, read out by the group's activation norm, could at
best match 5 of 7 types per base. This trains one and measures it. F = G x g features in G groups of g; a token
keeps the `k_groups` groups whose ReLU'd pre-activations have the largest L2 norm (every feature of a kept group
stays, all others are zero). Training is the project's `train_sae` (Lightning, input normalisation,
geometric-median b_dec, AuxK, the run's block split and seed; no temporal loss) with `build_sae` replaced by this
class. Then the SAE stage's own concept analysis (`interp.sae.run.label_features` on the planted tracks; the
labels' null skipped, `n_shifts` 0: the match table does not read it) scores two readings per base: each group's
norm as one feature, and each single feature; `interp.sae.planted.match_table` gives the per-base match (feature
chosen and threshold set on validation blocks, F1 and lift on test blocks), as the calibration reports it.

    python benchmarks/planted_group_sae.py OUT --configfile configs/demo.yaml --groups 256 --group-size 8 \\
        --k-groups 4 [--epochs 4]

The run must have been built (`snakemake planted` with the same config files). Writes OUT/units_{groups,features}
.parquet and OUT/metrics.json; prints the training metrics and both match tables. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import polars as pl
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

from planted_sae_variants import rule_jobs  # noqa: E402

import interp.sae.train as sae_train  # noqa: E402
from interp.sae.model import SparseAutoencoder, TrainCode  # noqa: E402
from interp.sae.planted import PlantedTargets, match_table, match_verdict  # noqa: E402
from interp.sae.planted_genome import planted_tracks, read_planted_bed  # noqa: E402
from interp.sae.run import label_features  # noqa: E402
from interp.stages import _sae_settings  # noqa: E402


class GroupTopKSAE(SparseAutoencoder):
    """Keeps each token's `k_groups` groups of largest activation norm; code [n, G g], dense."""

    architecture = "topk"  # only this script builds it; the name lets the config check pass

    def __init__(self, d_in: int, n_groups: int, group_size: int, k_groups: int) -> None:
        super().__init__(d_in, n_groups * group_size, k_groups * group_size)
        self.n_groups, self.group_size, self.k_groups = n_groups, group_size, k_groups

    def encode_normalized(self, x_normalized: torch.Tensor) -> torch.Tensor:
        acts = torch.relu(self.pre_activations(x_normalized)).view(-1, self.n_groups, self.group_size)
        keep = torch.zeros(acts.shape[:2], dtype=acts.dtype, device=acts.device)
        keep.scatter_(1, acts.norm(dim=2).topk(self.k_groups, dim=1).indices, 1.0)
        return (acts * keep[:, :, None]).flatten(1)

    def train_encode(self, x_normalized: torch.Tensor) -> TrainCode:
        pre = self.pre_activations(x_normalized)
        return TrainCode(self.encode_normalized(x_normalized), pre, pre.new_zeros(()))


class GroupNorms(torch.nn.Module):
    """The group SAE read as G features: a group's activation on a token is the L2 norm of its features."""

    def __init__(self, sae: GroupTopKSAE) -> None:
        super().__init__()
        self.sae, self.n_features, self.d_in = sae, sae.n_groups, sae.d_in

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.sae.encode(x).view(x.shape[0], self.sae.n_groups, self.sae.group_size).norm(dim=2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--configfile", nargs="+", required=True, help="the planted run's config files")
    parser.add_argument("--groups", type=int, default=256)
    parser.add_argument("--group-size", type=int, default=8)
    parser.add_argument("--k-groups", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=4)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    jobs = rule_jobs(args.configfile)
    params, inputs = jobs["sae"]["params"], jobs["sae"]["input"]
    cfg = _sae_settings({**params, "temporal_fraction": 0.0, "epochs": args.epochs,
                         "n_features": args.groups * args.group_size, "k": args.k_groups * args.group_size})
    sae_train.build_sae = lambda _cfg, d: GroupTopKSAE(d, args.groups, args.group_size, args.k_groups)
    store = ROOT / inputs["tokens_dir"] / f"{params['layer']}.zarr"
    windows = pl.read_parquet(ROOT / inputs["windows"])
    bases = pl.read_parquet(ROOT / inputs["bases"])
    model, metrics = sae_train.train_sae(store, cfg, windows, threads=torch.get_num_threads())
    print(f"groups {args.groups} x {args.group_size}, {args.k_groups} per token: test FVU {metrics['fvu']:.4f}, "
          f"L0 {metrics['l0']:.1f}, dead {metrics['dead_fraction']:.3f}", flush=True)
    tracks = planted_tracks(bases, read_planted_bed(ROOT / inputs["planted_bed"]))
    targets = PlantedTargets()
    for name, reading in (("groups", GroupNorms(model)), ("features", model)):
        _, units, _ = label_features(reading, store, windows, bases, cfg, params["concepts"],
                                     {**params["labels"], "n_shifts": 0}, params["top_windows"], tracks=tracks)
        units.write_parquet(args.out / f"units_{name}.parquet")
        match = match_table(units, targets)
        verdict = match_verdict(match, targets)
        print(f"{name}: per base {verdict['n_matched']} of {verdict['n_types']} matched", flush=True)
        with pl.Config(tbl_rows=20, tbl_cols=10):
            print(match.select("concept", "feature", "f1", "precision", "recall", "lift", "matched"), flush=True)
    (args.out / "metrics.json").write_text(json.dumps(
        {k: v for k, v in metrics.items() if k != "density_histogram"}, default=str, indent=1))


if __name__ == "__main__":
    main()
