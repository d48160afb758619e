"""For scale beside the planted LM's held-out cross-entropy: what a predictor told the truth would score.

On a planted run's genome (`results/<run>/planted/genome/planted.{fa,bed,json}`), the held-out tail the LM is
scored on (the last `planted.windows` heldout fraction, 20% by default), each base predicted by a model told
where every planted element lies and on which strand: motif bases from the motif's frequency column, repeat
bases certain, island bases from the island G+C, background bases from the generating order-k chain given the k
bases on each side (the right-hand factors over background bases only: element bases were not drawn given the
background), or given the k bases on the left only. Prints both cross-entropies (nats per base); nothing is
asserted.

    python benchmarks/planted_informed_predictor.py results/demo/planted/genome [--heldout-fraction 0.2]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from interp.genome.fasta import read_fasta
from interp.lm.markov import encode_acgt
from interp.sae.planted_genome import PlantedConfig, motif_frequencies, read_planted_bed


def informed_cross_entropy(seq: str, elements, transition: np.ndarray, cfg: PlantedConfig,
                           first: int) -> tuple[float, float]:
    """(both sides, left only) mean -log p over bases first.. of `seq`."""
    order = int(round(np.log(transition.shape[0]) / np.log(4)))
    codes = encode_acgt(seq)
    told = np.full((len(seq), 4), np.nan)
    freqs = motif_frequencies(cfg.motifs)
    for r in elements.iter_rows(named=True):
        s, e = r["start"], r["end"]
        if r["name"] == "repeat":
            told[s:e] = 0.0
            told[np.arange(s, e), codes[s:e]] = 1.0
        elif r["name"] == "gc_island":
            g = cfg.island_gc / 2
            told[s:e] = [0.5 - g, g, g, 0.5 - g]
        else:
            f = freqs[r["name"].removeprefix("motif_")]
            told[s:e] = f.T if r["strand"] == "+" else f[::-1, ::-1].T  # reverse complement
    background = np.isnan(told[:, 0])
    log_t = np.log(transition)

    def context(i: int, base: int | None = None, at: int = -1) -> int:
        x = 0
        for j in range(i - order, i):
            x = x * 4 + (base if j == at else int(codes[j]))
        return x

    both, left = [], []
    for i in range(max(first, order), len(seq)):
        if not background[i]:
            loss = -np.log(told[i, codes[i]])
            both.append(loss)
            left.append(loss)
            continue
        scores = log_t[context(i)].copy()
        left.append(-scores[codes[i]])
        for base in range(4):
            for j in range(i + 1, min(i + order + 1, len(seq))):
                if background[j]:
                    scores[base] += log_t[context(j, base, i), codes[j]]
        both.append(-(scores[codes[i]] - np.logaddexp.reduce(scores)))
    return float(np.mean(both)), float(np.mean(left))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("genome", type=Path, help="the planted run's genome folder")
    parser.add_argument("--heldout-fraction", type=float, default=0.2)
    args = parser.parse_args()
    missing = [n for n in ("planted.json", "planted.fa", "planted.bed") if not (args.genome / n).is_file()]
    if missing:
        raise SystemExit(f"{args.genome}: no {', '.join(missing)}; expected a planted run's genome folder "
                         "(results/<run>/planted/genome, written by `make planted`)")
    stats = json.loads((args.genome / "planted.json").read_text())
    cfg = PlantedConfig.from_params(stats["config"])
    seq = read_fasta(args.genome / "planted.fa")[cfg.contig].upper()
    elements = read_planted_bed(args.genome / "planted.bed")
    first = len(seq) - int(round(args.heldout_fraction * len(seq)))
    both, left = informed_cross_entropy(seq, elements, np.asarray(stats["background_transition"]), cfg, first)
    print(f"held-out bases {len(seq) - first}: informed predictor {both:.4f} nats (both sides), "
          f"{left:.4f} (left only)")


if __name__ == "__main__":
    main()
