"""What a reviewer reads first: verdicts per phenotype, calibration, caveats, grouped notes, methods.

Plain functions over plain rows (dicts as in report.json), so every rule here is unit-tested on
synthetic inputs (tests/test_report.py). Nothing here reads files; `interp.report.build` does.
Keys that the audit, rank and SAE stages may or may not write (verdict_rule, reason, p_within_adjusted,
family, short_name, ...) are used when present and derived or left out when absent.
"""

from __future__ import annotations

import math
import re
from collections import OrderedDict, defaultdict
from typing import Any

from interp.audit import MIN_REPORTED_GROUP
from interp.calibration import rate
from interp.embed.hub import is_commit

# Severity of a verdict for "the worst across layers". An unknown verdict string is treated like
# INCONCLUSIVE (it cannot be read as a pass), and keeps its own text on the badge.
SEVERITY = {"PASS": 0, "NO SIGNAL": 1, "WARN": 2, "INCONCLUSIVE": 2, "FAIL": 3}
UNKNOWN_SEVERITY = 2
SMALL_POPULATION = 50
"""A population with fewer samples gets a caveat: its per-population AUROC has SE ~0.07 or more."""
FEW_CASES = 20
"""A phenotype with fewer cases (or controls) gets a caveat."""
DEAD_FRACTION = 0.2
"""An SAE with more dead features gets a caveat."""
DENSE_FRACTION = 0.1
"""An SAE with more dense features (firing on > 10% of tokens) gets a caveat."""


def _signed(x: Any) -> str:
    """A number as +0.123, or n/a (None, NaN)."""
    v = _num(x)
    return "n/a" if v is None else f"{v:+.3f}"


def _people(x: Any) -> str | None:
    """A count of people as a caveat says it ("Fewer than 5" for a masked "<5"), or None when there is none."""
    if x == f"<{MIN_REPORTED_GROUP}":
        return f"Fewer than {MIN_REPORTED_GROUP}"
    v = _num(x)
    return str(int(v)) if v else None


def _num(x: Any) -> float | None:
    """A finite float or None (NaN, None, strings such as "<5" are not numbers here)."""
    if isinstance(x, bool) or x is None:
        return None
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def verdict_class(verdict: str) -> str:
    """CSS class of a verdict badge: v-pass, v-fail, v-warn, v-no-signal, v-inconclusive, v-other."""
    v = str(verdict).upper()
    known = {"PASS": "pass", "FAIL": "fail", "WARN": "warn", "NO SIGNAL": "no-signal", "INCONCLUSIVE": "inconclusive"}
    return f"v-{known.get(v, 'other')}"


def severity(verdict: str) -> int:
    return SEVERITY.get(str(verdict).upper(), UNKNOWN_SEVERITY)


def reason_of(row: dict) -> str:
    """The one-sentence reason of an audit row: `reason` when the audit writes one, else its `reasons`."""
    reason = row.get("reason")
    if isinstance(reason, str) and reason.strip():
        return reason.strip()
    reasons = row.get("reasons")
    if isinstance(reasons, (list, tuple)):
        reasons = "; ".join(str(r) for r in reasons)
    return str(reasons).strip() if reasons else "no reason recorded by the audit"


def worst_verdicts(audit: list[dict], layer_order: dict[str, list[str]] | None = None) -> list[dict]:
    """One verdict per phenotype: the worst over models x layers, with the (model, layer) that decided it.

    Ties are broken by model order, then layer order (`layer_order[model]`, else the rows' order); the
    other layers with the same verdict are listed in `also`. Rows of one region (`region` set, audit.by_region)
    count only when FAIL (then `region` names it). Returns, phenotypes in first-seen order,
    [{phenotype, verdict, model, layer, region, reason, verdict_rule, multiplicity, also [layer], by_layer
    [{model, layer, region, verdict}], css}].
    """
    layer_order = layer_order or {}
    by_pheno: OrderedDict[str, list[dict]] = OrderedDict()
    for row in audit:
        # a region's own verdict (audit.by_region) decides only when it is FAIL: a gene without the effect is
        # NO SIGNAL by design, while ancestry explaining one gene's signal must reach the headline
        if row.get("region") and str(row["verdict"]).upper() != "FAIL":
            continue
        by_pheno.setdefault(str(row["phenotype"]), []).append(row)

    def position(row: dict, i: int) -> tuple:
        models = list(layer_order)
        m = models.index(row.get("model")) if row.get("model") in models else len(models)
        layers = layer_order.get(row.get("model"), [])
        lay = layers.index(row.get("layer")) if row.get("layer") in layers else len(layers) + i
        return (m, lay)

    out = []
    for phenotype, rows in by_pheno.items():
        ordered = [r for _, r in sorted(enumerate(rows), key=lambda t: position(t[1], t[0]))]
        worst = max(severity(r["verdict"]) for r in ordered)
        deciding = [r for r in ordered if severity(r["verdict"]) == worst]
        # among equally severe verdicts of different strings (WARN vs INCONCLUSIVE) keep the first
        first = deciding[0]
        also = [r["layer"] if len({x.get("model") for x in ordered}) == 1 else f"{r.get('model')}/{r['layer']}"
                for r in deciding[1:] if r["verdict"] == first["verdict"]]
        out.append({
            "phenotype": phenotype,
            "verdict": str(first["verdict"]),
            "model": first.get("model"),
            "layer": first.get("layer"),
            "region": first.get("region"),
            "reason": reason_of(first),
            "verdict_rule": first.get("verdict_rule"),
            "multiplicity": first.get("multiplicity"),
            "also": also,
            "by_layer": [{"model": r.get("model"), "layer": r.get("layer"), "region": r.get("region"),
                          "verdict": str(r["verdict"])} for r in ordered],
            "css": verdict_class(first["verdict"]),
        })
    return out


def group_verdict_reasons(audit: list[dict]) -> list[dict]:
    """The "why each verdict" list with repeats folded: rows of one phenotype and model that share a verdict
    and a verdict_rule become one entry naming all their layers ("<layer> (region <name>)" for a region's
    row, audit.by_region), with the first layer's reason as the example (the numbers of every layer stay in
    the audit table and report.json).

    Returns [{phenotype, model, verdict, verdict_rule, layers [str], reason, css}] in first-seen order.
    """
    groups: OrderedDict[tuple, dict] = OrderedDict()
    for row in audit:
        key = (str(row["phenotype"]), row.get("model"), str(row["verdict"]), row.get("verdict_rule"))
        if key not in groups:
            groups[key] = {"phenotype": key[0], "model": key[1], "verdict": key[2], "verdict_rule": key[3],
                           "layers": [], "reason": reason_of(row), "css": verdict_class(row["verdict"])}
        region = row.get("region")
        groups[key]["layers"].append(str(row.get("layer")) + (f" (region {region})" if region else ""))
    return list(groups.values())


# ------------------------------------------------------------------------------------------ notes
def group_probe_notes(probes: list[dict], layer_order: dict[str, list[str]]) -> list[str]:
    """Fold-skip notes of the probe table, one line per (model, target, number skipped).

    Rows with the same target and the same number of skipped folds are grouped across layers and
    feature sets: "exon probes (tiny-dnalm): 1 of 5 folds skipped in every layer and in the shuffled
    and 3-mer controls: a fold had no exon windows or only exon windows (22 of 399 windows are exon)".
    """
    groups: OrderedDict[tuple, dict] = OrderedDict()
    for r in probes:
        skipped = int(r.get("n_folds_skipped") or 0)
        if skipped <= 0:
            continue
        target = str(r["target"])
        model = r.get("model")
        is_control = r.get("features") == "kmer3" or model not in layer_order
        key = (target, skipped)
        g = groups.setdefault(key, {"models": OrderedDict(), "features": [], "total": None,
                                    "n_pos": r.get("n_pos"), "n_neg": r.get("n_neg")})
        if not is_control:
            g["models"].setdefault(model, []).append(r.get("layer"))
        if r.get("features") not in g["features"]:
            g["features"].append(r.get("features"))
        if r.get("features") in ("embedding", "kmer3") and r.get("n_folds_used") is not None:
            g["total"] = int(r["n_folds_used"]) + skipped
    lines = []
    for (target, skipped), g in groups.items():
        total = f" of {g['total']}" if g["total"] else ""
        fold_word = "fold" if skipped == 1 and not g["total"] else "folds"
        where = []
        for model, layers in g["models"].items():
            all_layers = layer_order.get(model, [])
            present = [la for la in all_layers if la in set(layers)]
            if all_layers and len(present) == len(all_layers):
                where.append(f"every layer of {model}" if len(g["models"]) > 1 else "every layer")
            else:
                where.append(f"{model} " + ", ".join(sorted(set(layers), key=lambda la: (
                    all_layers.index(la) if la in all_layers else len(all_layers), la))))
        controls = [c for c in ("shuffled", "kmer3") if c in g["features"]]
        control_text = " and ".join("the 3-mer control" if c == "kmer3" else "the shuffled-label control"
                                    for c in controls)
        scope = " and ".join(x for x in (", ".join(where), control_text) if x)
        counts = ""
        if g["n_pos"] is not None and g["n_neg"] is not None:
            counts = f" ({g['n_pos']} of {int(g['n_pos']) + int(g['n_neg'])} windows are {target})"
        lines.append(f"{target} probes: {skipped}{total} {fold_word} skipped in {scope}: "
                     f"a fold had no {target} windows or only {target} windows{counts}")
    return lines


# ------------------------------------------------------------------------------------------ biomarkers
def family_of(row: dict) -> str:
    """Feature family of a biomarker row: `family` when rank writes it, else derived from kind/model/layer:
    variant, embedding:<model>/<layer>, sae:<model>/<layer>, variant_effect:<model>."""
    fam = row.get("family")
    if isinstance(fam, str) and fam:
        return fam
    kind = str(row.get("kind") or "")
    model, layer = row.get("model") or "", row.get("layer") or ""
    if kind == "variant":
        return "variant"
    if kind == "variant_effect":
        return f"variant_effect:{model}" if model else "variant_effect"
    if model and layer:
        return f"{kind}:{model}/{layer}"
    return f"{kind}:{model}" if model else kind


FAMILY_TITLES = {"variant": "Variants", "embedding": "Embedding features", "sae": "SAE features",
                 "variant_effect": "Variant-effect scores"}


def family_title(family: str) -> str:
    """Human title: 'Embedding features: tiny-dnalm / block2'."""
    kind, _, rest = family.partition(":")
    title = FAMILY_TITLES.get(kind, kind.replace("_", " ").capitalize())
    return f"{title}: {rest.replace('/', ' / ')}" if rest else title


def short_name(row: dict) -> str:
    """Short display name of a feature; the full id stays in `feature` (hover, JSON).

    Variants 'chr17:6141:C:T' -> 'chr17:6141 C>T'; model features '<model>/<layer>/<window>/dim46' ->
    'dim46' (the window has its own column); anything else: its last path component.
    """
    name = row.get("short_name")
    if isinstance(name, str) and name:
        return name
    feature = str(row.get("feature", ""))
    if row.get("kind") == "variant":
        parts = feature.split(":")
        if len(parts) == 4:
            return f"{parts[0]}:{parts[1]} {parts[2]}>{parts[3]}"
        return feature
    return feature.rsplit("/", 1)[-1]


def family_tables(rows: list[dict], top: int, alpha: float = 0.05) -> list[dict]:
    """Biomarker rows (all tests of a run) into one table per (phenotype, family), each with its BH scope.

    `rows`: every feature (not only the top) so n_tests and the counts are the family's; rows that rank left
    untested (`rank` empty, p NaN: too few carriers, constant) are neither counted nor listed. `alpha`: rank's
    significance level (`rank.alpha`). Returns [{phenotype, family, title, kind, bh_scope, n_tests,
    n_q_below_0_05, alpha, n_significant (q < alpha), rows [top by rank, with short_name and family added]}],
    phenotypes in first-seen order, variants first, then model families.
    """
    groups: OrderedDict[tuple[str, str], list[dict]] = OrderedDict()
    for r in rows:
        groups.setdefault((str(r["phenotype"]), family_of(r)), []).append(r)
    phen_order = list(OrderedDict.fromkeys(p for p, _ in groups))
    kind_order = ["variant", "variant_effect", "embedding", "sae"]

    def sort_key(key: tuple[str, str]) -> tuple:
        phen, fam = key
        kind = fam.partition(":")[0]
        return (phen_order.index(phen), kind_order.index(kind) if kind in kind_order else len(kind_order), fam)

    out = []
    for phen, fam in sorted(groups, key=sort_key):
        members = [r for r in groups[(phen, fam)]
                   if (_num(r["rank"]) is not None if "rank" in r else _num(r.get("p")) is not None)]
        n = len(members)
        n_q05 = sum(1 for r in members if (_num(r.get("q")) is not None and _num(r.get("q")) < 0.05))
        n_sig = sum(1 for r in members if (_num(r.get("q")) is not None and _num(r.get("q")) < alpha))
        scope = next((r.get("bh_scope") for r in groups[(phen, fam)] if r.get("bh_scope")), None)
        if not scope:
            scope = f"Benjamini-Hochberg q within this family for phenotype {phen}"
        ranked = sorted(members, key=lambda r: (_num(r.get("rank")) or math.inf, _num(r.get("p")) or 1.0,
                                                str(r.get("feature"))))
        table = []
        for r in ranked[:top]:
            entry = dict(r)
            entry["family"] = fam
            entry["short_name"] = short_name(r)
            table.append(entry)
        out.append({"phenotype": phen, "family": fam, "title": family_title(fam),
                    "kind": fam.partition(":")[0], "bh_scope": scope, "n_tests": n,
                    "n_q_below_0_05": n_q05, "alpha": alpha, "n_significant": n_sig, "rows": table})
    return out


def _variant_id(tag: str) -> str:
    """The variant id of one of rank's `tags_variants` entries ("chr1:150:A:G(r=0.82)" -> "chr1:150:A:G"): each
    feature states its own r, so the same variant tagged by two features must count once."""
    return re.sub(r"\(r=[^)]*\)$", "", tag.strip())


def linkage_summary(rows: list[dict], q_level: float = 0.05) -> list[dict]:
    """How many separate signals the model-feature discoveries of each phenotype are.

    Features of overlapping windows that all carry one variant are one signal, however many embedding
    dimensions or SAE features pass. Per phenotype: [{phenotype, n_model_features_q, n_windows, n_variants_q,
    lead_variant, n_tagged_variants}] (`n_tagged_variants`: distinct variants named in rank's `tags_variants`,
    when present, whatever r each feature gives them).
    """
    out = []
    phenotypes = list(OrderedDict.fromkeys(str(r["phenotype"]) for r in rows))
    for ph in phenotypes:
        sig = [r for r in rows if str(r["phenotype"]) == ph and _num(r.get("q")) is not None and r["q"] < q_level]
        model = [r for r in sig if r.get("kind") not in ("variant", "variant_effect")]
        variants = sorted((r for r in sig if r.get("kind") == "variant"), key=lambda r: (r.get("p") or 1.0))
        windows = {(r.get("contig"), r.get("start"), r.get("end")) for r in model}
        tagged = set()
        for r in model:
            tv = r.get("tags_variants")
            if isinstance(tv, str) and tv:
                tagged.update(_variant_id(t) for t in re.split(r"[,;\s]+", tv) if t)
            elif isinstance(tv, (list, tuple)):
                tagged.update(_variant_id(str(t)) for t in tv)
        out.append({"phenotype": ph, "alpha": q_level, "n_model_features_q": len(model), "n_windows": len(windows),
                    "n_variants_q": len(variants),
                    "lead_variant": short_name(variants[0]) if variants else None,
                    # null only where rank's table predates `tags_variants`; no tagged variant is a count of 0
                    "n_tagged_variants": None if model and not any("tags_variants" in r for r in model)
                    else len(tagged)})
    return out


# ------------------------------------------------------------------------------------------ calibration
RUN_AXES = {
    "n_samples": ("n_samples", "sample_size", "cohort_size", "n"),
    "n_per_population": ("n_per_population", "per_population", "population_size"),
    "n_populations": ("n_populations", "populations"),
    "odds_ratio": ("odds_ratio", "or", "effect", "causal_effect", "effect_size"),
    "permutations": ("permutations", "n_permutations", "n_null_replicates"),
}


def _axis_distance(a: float, b: float) -> float:
    if a > 0 and b > 0:
        return abs(math.log(a / b))
    return abs(a - b)


def calibration_summary(rows: list[dict] | None, run: dict[str, float]) -> dict:
    """The calibration behind the verdicts: the cell of the calibration grid closest to this run.

    `rows`: calibration.json rows {cell, axis, value, truth, n_replicates, verdict_rates {VERDICT:
    {rate, ci_low, ci_high, count}}, power_variant, power_feature, type1, fdr}, or None when the run has
    no calibration file. `run`: this run's characteristics (keys of RUN_AXES: n_samples, odds_ratio, ...).
    A grid axis whose name matches one of them picks the cell with the nearest value (log scale); with
    no matching axis the base cell is used. Returns {available, cell, axis, value, run_value, matched_by,
    note, rows [{truth, n_replicates, verdict_rates, power_variant, power_feature, type1, fdr}]}.
    """
    if not rows:
        return {"available": False, "rows": [],
                "note": "Calibration is not available for this configuration: no calibration table "
                        "(report.calibration) was given to the report, so the error "
                        "rates of these verdicts were not measured for it."}
    from interp.calibration import BASE

    best: tuple[float, str, dict, str, Any] | None = None
    for r in rows:
        # the base cell lies on every axis, at its own setting (n 1,000, odds ratio 2): read only by its axis
        # "base", it was never the nearest, and a run of n 1,000 was quoted the n = 3,000 cell
        on_axes = [(str(r.get("axis") or "").lower(), r.get("value"))]
        if str(r.get("cell", "")).lower() == "base":
            on_axes += [(str(a).lower(), v) for a, v in (r.get("settings") or BASE).items()]
        for axis, raw in on_axes:
            value = _num(raw)
            for key, names in RUN_AXES.items():
                if axis in names and value is not None and _num(run.get(key)) is not None:
                    d = _axis_distance(value, float(run[key]))
                    # (at equal distance a cell of that axis before the base cell)
                    if best is None or d < best[0] or (d == best[0] and str(best[2].get("cell")) == "base"):
                        best = (d, key, r, axis, raw)
    if best is not None:
        _, key, pick, axis, raw = best
        matched_by = "nearest"
        cell = pick.get("cell")
        where = f"{axis} = {raw}" + (" (the base cell)" if str(cell).lower() == "base" else "")
        note = f"Closest calibration cell to this run: {where} (this run: {run[key]:g})."
    else:
        base = [r for r in rows if str(r.get("cell", "")).lower() == "base"
                or str(r.get("axis") or "").lower() in ("", "base", "none")]
        if not base:
            return {"available": False, "rows": [],
                    "note": "Calibration is not available for this configuration: the calibration table "
                            "has no base cell and no axis matching this run."}
        pick, matched_by, cell = base[0], "base", base[0].get("cell")
        note = "The calibration grid's base cell (no grid axis matches this run's configuration)."
    chosen = [r for r in rows if r.get("cell") == cell]
    keep = ("truth", "n_replicates", "verdict_rates", "power_variant", "power_feature", "type1", "fdr")
    out_rows = [{k: r.get(k) for k in keep} for r in chosen]
    # calibration.json lists only the verdicts a truth produced: one never produced is 0 of n (with its
    # interval), as calibration.tsv shows it, not unknown
    names = list(OrderedDict.fromkeys(v for r in out_rows for v in (r["verdict_rates"] or {})))
    for r in out_rows:
        rates = dict(r["verdict_rates"] or {})
        n = next((x.get("n") for x in rates.values() if isinstance(x, dict) and x.get("n")), None)
        if n:
            r["verdict_rates"] = {v: rates.get(v) or rate(0, int(n)) for v in names}
    return {"available": True, "cell": cell, "axis": pick.get("axis"), "value": pick.get("value"),
            "run_value": run.get(best[1]) if best else None, "matched_by": matched_by, "note": note,
            "rows": out_rows}


# ------------------------------------------------------------------------------------------ caveats
def _caveat(cid: str, severity_: str, text: str, section: str) -> dict:
    return {"id": cid, "severity": severity_, "text": text, "section": section}


def detect_caveats(report: dict, layer_order: dict[str, list[str]] | None = None) -> list[dict]:
    """Caveats computed from the run's own numbers; [{id, severity (high|medium|info), text, section}].

    Checks: the LM against its order-3 Markov baseline; each probe target's best layer against the 3-mer
    and shuffled controls; small populations and few cases; verdicts that disagree across layers; the
    smallest attainable Monte Carlo p; SAE dead / dense fractions; calibration availability; planted
    truth not recovered (simulated cohorts). The text states the numbers that triggered it.
    """
    out: list[dict] = []
    moving = [m.get("name") for m in (report.get("provenance") or {}).get("models") or []
              if (m.get("card") or {}).get("trust_remote_code")
              and not is_commit((m.get("card") or {}).get("revision"))]
    if moving:
        out.append(_caveat("remote_code_unpinned", "medium",
                           f"{', '.join(moving)} ran custom model code from a moving revision (the card names a "
                           "branch, not a commit): the commit loaded is in the embedding stats' provenance; pin "
                           "`revision` to that commit in the card to make the code fixed.", "represents"))
    for m in report.get("lm") or []:
        ce, o3 = _num(m.get("heldout_ce")), _num(m.get("baseline_order3_ce"))
        diff = m.get("order3_difference") or {}
        high = _num(diff.get("high"))
        if ce is not None and o3 is not None and ce >= o3:
            out.append(_caveat("lm_vs_markov3", "high",
                               f"The language model {m.get('model')} does not beat the order-3 Markov baseline "
                               f"(held-out cross-entropy {ce:.3f} vs {o3:.3f} nats/base): it has learnt no more "
                               "about the sequence than 3-mer statistics.", "model"))
        elif ce is not None and o3 is not None and high is not None and high >= 0:
            out.append(_caveat("lm_vs_markov3", "medium",
                               f"The language model {m.get('model')} is below the order-3 Markov baseline by "
                               f"{o3 - ce:.4f} nats/base on held-out bases ({ce:.3f} vs {o3:.3f}), but the 95% "
                               f"block interval of the difference ({_num(diff.get('low')):+.4f} to "
                               f"{high:+.4f}, {diff.get('n_blocks')} blocks of {diff.get('block')} bases) reaches "
                               "0: the held-out bases do not show it has learnt more than 3-mer statistics.",
                               "model"))
    probes = report.get("probes") or []
    not_above_kmer, not_above_shuffled = [], []
    if any("vs_kmer3_p" in p for p in probes):
        from interp.probe import CONTROL_ALPHA, beats_controls

        for t, claim in beats_controls(probes).items():
            emb = [p for p in probes if str(p["target"]) == t and p.get("features") == "embedding"]
            if not any(_num(p.get("auroc_mean")) is not None for p in emb):
                continue  # no fold was used at all: the probe notes say which folds were skipped
            several = len({p.get("model") for p in emb}) > 1
            untested = "fewer than 2 CV folds compared: not tested"
            # the row closest to the claim (lowest p; a row with one fold compared has no interval), with the
            # level the claim needed: its unadjusted interval may lie above 0 where the Bonferroni one does not
            tested = [p for p in emb
                      if _num(p.get("vs_kmer3_p")) is not None and _num(p.get("vs_kmer3_diff")) is not None]
            best = min(tested, key=lambda p: (p["vs_kmer3_p"], -p["vs_kmer3_diff"]), default=None)
            if claim["kmer3"] is False and best is not None:
                name = f"{best.get('model')} {best.get('layer')}" if several else best.get("layer")
                level = CONTROL_ALPHA / (2 * claim["n_rows"])
                not_above_kmer.append(f"{t} (closest layer {name}: {best['vs_kmer3_diff']:+.3f} AUROC, one-sided p "
                                      f"{best['vs_kmer3_p']:.3g} against the Bonferroni level {level:.3g}; "
                                      f"unadjusted 95% fold interval {_signed(best.get('vs_kmer3_low'))} to "
                                      f"{_signed(best.get('vs_kmer3_high'))})")
            elif claim["kmer3"] is None:
                not_above_kmer.append(f"{t} ({untested})")
            if claim["shuffled"] is False:
                not_above_shuffled.append(t)
            elif claim["shuffled"] is None:
                not_above_shuffled.append(f"{t} ({untested})")
        rule = ("by a paired test over the CV folds (Nadeau-Bengio corrected t: no layer's interval at "
                f"1 - {CONTROL_ALPHA:g} / layers, Bonferroni over the target's models x layers, lies above 0)")
    else:  # a report.json from before the paired comparison: the old one-fold-SD rule
        rule = "by more than one fold-SD"
        for t in OrderedDict.fromkeys(str(p["target"]) for p in probes):
            emb = [p for p in probes if p["target"] == t and p.get("features") == "embedding"
                   and _num(p.get("auroc_mean")) is not None]
            if not emb:
                continue
            best = max(emb, key=lambda p: p["auroc_mean"])
            b, sd = best["auroc_mean"], _num(best.get("auroc_sd")) or 0.0
            kmer = [p for p in probes if p["target"] == t and p.get("features") == "kmer3"
                    and _num(p.get("auroc_mean")) is not None]
            if kmer and b <= kmer[0]["auroc_mean"] + sd:
                not_above_kmer.append(f"{t} (best layer {best.get('layer')} {b:.3f} ± {sd:.3f} vs 3-mer "
                                      f"{kmer[0]['auroc_mean']:.3f})")
            shuf = [p for p in probes if p["target"] == t and p.get("features") == "shuffled"
                    and p.get("model") == best.get("model") and p.get("layer") == best.get("layer")
                    and _num(p.get("auroc_mean")) is not None]
            if shuf and b <= shuf[0]["auroc_mean"] + sd:
                not_above_shuffled.append(f"{t} ({b:.3f} vs shuffled {shuf[0]['auroc_mean']:.3f})")
    if not_above_kmer:
        out.append(_caveat("probes_vs_kmer3", "medium",
                           f"Probes do not beat the 3-mer control {rule} for: "
                           + "; ".join(not_above_kmer) + ". For these targets the run does not show that the "
                           "model adds to k-mer counts (a gain may be small, or need more folds, rather than be "
                           "absent).", "represents"))
    if not_above_shuffled:
        out.append(_caveat("probes_vs_shuffled", "medium",
                           f"Probes do not beat the shuffled-label control {rule} for: "
                           + "; ".join(not_above_shuffled) + ".", "represents"))
    cohort = report.get("cohort") or {}
    validation = cohort.get("validation") or {}
    unphased = _num(validation.get("unphased_het_rate"))
    if unphased is not None and unphased > 0.01:
        policy = (cohort.get("haplotypes") or {}).get("unphased_policy", "ref")
        half = _num(validation.get("n_unphased_half_missing")) or 0  # absent from reports before it was counted
        half_text = f" ({half:.0f} of them half-missing, './1')" if half else ""
        out.append(_caveat("unphased_calls", "medium" if unphased < 0.1 else "high",
                           f"{unphased:.1%} of the heterozygous calls in the studied regions are unphased{half_text}; under "
                           f"cohort.unphased: {policy} they are {'REF' if policy == 'ref' else 'masked (N)'} on both "
                           "haplotypes, so the haplotypes the model saw lack those variants.", "audit"))
    # "unknown": a shard from before devices were recorded (a resumed run), not a second device
    known = [sorted(set(e.get("devices") or []) - {"unknown"}) for e in (cohort.get("embedding") or [])]
    mixed = sorted({d for devices in known if len(devices) > 1 for d in devices})
    if mixed:
        out.append(_caveat("mixed_devices", "medium",
                           f"The cohort's windows were embedded on more than one device ({', '.join(mixed)}; "
                           "embed.device auto on nodes with and without a GPU). Floating-point results differ "
                           "slightly between devices, so the tables are not bit-for-bit reproducible on other "
                           "nodes; set embed.device to one device for a reproducible run.", "audit"))
    mostly_missing = _people(validation.get("n_samples_mostly_missing"))
    if mostly_missing:
        out.append(_caveat("samples_mostly_missing", "medium",
                           f"{mostly_missing} sample(s) have missing genotypes at over half of the variants in "
                           "the studied regions; their haplotypes are mostly the reference (or N), per "
                           "cohort.missing.", "audit"))
    mostly_unphased = _people(validation.get("n_samples_mostly_unphased"))
    if mostly_unphased:
        policy = (cohort.get("haplotypes") or {}).get("unphased_policy", "ref")
        out.append(_caveat("samples_mostly_unphased", "high",
                           f"{mostly_unphased} sample(s) have over half of their heterozygous calls in the "
                           f"studied regions unphased; under cohort.unphased: {policy} those variants are "
                           f"{'REF' if policy == 'ref' else 'masked (N)'} on both of their haplotypes, so these "
                           "samples differ from the others by how they were phased: if they share a batch or a "
                           "population, the audit and rank can see it. Phase them with the others, or leave them "
                           "out.", "audit"))
    markers = cohort.get("ancestry_markers") or {}
    if markers.get("converged") is False:
        out.append(_caveat("ancestry_pcs_unconverged", "high",
                           f"The ancestry PCs of the marker panel ({markers.get('vcf')}) come from the randomized "
                           f"block Krylov SVD, which stopped after {markers.get('n_passes')} passes before its PC "
                           "subspace converged to the exact one: the later PCs may differ from the exact PCs and "
                           "with the seed, and so may the audit's adjustment. Use fewer, LD-pruned markers or fewer "
                           "PCs (cohort.n_pcs).", "audit"))
    labels = list(cohort.get("populations") or {})
    if len(labels) == 1 and labels[0] != "all":
        out.append(_caveat("one_population_label", "medium",
                           f"Every sample carries the population label {labels[0]!r}: the audit's strata come from "
                           "k-means bins of the ancestry PCs, as without labels (admixture inside the label is "
                           "carried by the PCs).", "audit"))
    small = []
    for pop, n in (cohort.get("populations") or {}).items():
        v = _num(n)
        if n == "masked":  # masked only so that a "<5" population's size is not the total minus the others'
            continue
        if v is None or v < SMALL_POPULATION:
            small.append(f"{pop} (n = {n})")
    if small:
        out.append(_caveat("small_population", "medium",
                           f"Few samples in {', '.join(small)} (under {SMALL_POPULATION}): per-population "
                           "AUROCs there have wide intervals and within-population tests little power.", "audit"))
    audit = report.get("audit") or []
    few = OrderedDict()
    for a in audit:
        n, cases = _num(a.get("n_samples")), _num(a.get("n_cases"))
        if n is not None and cases is not None and min(cases, n - cases) < FEW_CASES:
            # a group under MIN_REPORTED_GROUP is never counted exactly (cases, or controls = n - cases)
            if cases < MIN_REPORTED_GROUP:
                count = f"<{MIN_REPORTED_GROUP} cases of {int(n)}"
            elif n - cases < MIN_REPORTED_GROUP:
                count = f"<{MIN_REPORTED_GROUP} controls of {int(n)}"
            else:
                count = f"{int(cases)} cases of {int(n)}"
            few[a["phenotype"]] = f"{a['phenotype']} ({count})"
    if few:
        out.append(_caveat("few_cases", "medium", f"Few cases or controls (under {FEW_CASES}) for "
                           + ", ".join(few.values()) + ".", "audit"))
    by_pheno: dict[str, set] = defaultdict(set)
    for a in audit:
        if not a.get("region"):  # regions differ by design (audit.by_region): the genes without the effect
            by_pheno[a["phenotype"]].add(str(a["verdict"]))
    split = {p: v for p, v in by_pheno.items() if len(v) > 1}
    if split:
        out.append(_caveat("verdicts_disagree", "medium", "Verdicts differ between layers for "
                           + "; ".join(f"{p} ({', '.join(sorted(v))})" for p, v in split.items())
                           + ": the summary shows the worst; see the audit section for each layer.", "audit"))
    # the run's null size B: n_null_replicates_max, else the most any test used (sequential tests stop early,
    # so the fewest used says nothing about the attainable p)
    perms = [_num(a.get("n_null_replicates_max") or a.get("n_null_replicates") or a.get("n_permutations"))
             for a in audit]
    perms = [p for p in perms if p]
    if perms:
        b = int(max(perms))
        p_min = 1.0 / (b + 1)
        audit_cfg = ((report.get("provenance") or {}).get("config") or {}).get("audit", {})
        alpha = _num(audit_cfg.get("alpha"))
        n_verdicts = len(audit)
        bh = audit_cfg.get("multiplicity") == "bh"
        # the largest raw p that can still pass after the adjustment: under BH every p at the floor adjusts to itself
        level = None if alpha is None else (alpha if bh else alpha / max(n_verdicts, 1))
        if level is not None and p_min > level:
            # the audit's nulls are Monte Carlo: a permutation inside strata, or (covariates, PC-bin strata) a
            # parametric bootstrap, as each row's null_method says; the signal test permutes over all samples
            nulls = sorted({str(a["null_method"]) for a in audit if a.get("null_method")})
            how = ("within-ancestry null: " + "; ".join(nulls) if nulls
                   else "permutation or parametric bootstrap null")
            out.append(_caveat("permutation_floor", "medium",
                               f"With {b} null replicates the smallest attainable p is {p_min:.3g}, above "
                               + (f"alpha = {alpha:g}: " if bh else f"alpha / number of verdicts = {alpha:g} / "
                                  f"{n_verdicts} = {alpha / n_verdicts:.3g}: ") +
                               f"after multiplicity control across verdicts no Monte Carlo test of the audit ({how}) "
                               "can reach significance; raise audit.max_null_replicates.", "audit"))
    for s in report.get("sae") or []:
        dead, dense = _num(s.get("dead_fraction")), _num(s.get("dense_fraction"))
        if dead is not None and dead > DEAD_FRACTION:
            # dead_fraction (interp.sae.train): no test token and no token of the last training epoch
            out.append(_caveat("sae_dead", "info", f"SAE {s.get('model')}/{s.get('layer')}: {dead:.0%} of features "
                               "are dead: they fire on no held-out (test-block) token and on no token of the last "
                               "training epoch.", "represents"))
        if dense is not None and dense > DENSE_FRACTION:
            out.append(_caveat("sae_dense", "info", f"SAE {s.get('model')}/{s.get('layer')}: {dense:.0%} of features "
                               "fire on more than 10% of tokens (dense features carry little concept "
                               "information).", "represents"))
    calib = (report.get("summary") or {}).get("calibration") or report.get("_calibration")
    if audit and calib is not None and not calib.get("available"):
        out.append(_caveat("no_calibration", "medium", calib.get("note", "Calibration not available."), "summary"))
    for link in report.get("biomarker_linkage") or []:
        n, w = link.get("n_model_features_q") or 0, link.get("n_windows") or 0
        if n >= 20 and w <= max(5, n // 20):
            lead = f" (lead variant {link['lead_variant']})" if link.get("lead_variant") else ""
            tagged = (f", tagging {link['n_tagged_variants']} variant(s)" if link.get("n_tagged_variants") else "")
            out.append(_caveat("linked_features", "medium",
                               f"{link['phenotype']}: {n} model features at q < {link.get('alpha', 0.05):g} lie in "
                               f"{w} window(s){tagged}, "
                               f"beside {link.get('n_variants_q', 0)} significant variant(s){lead}: they are at most {w} "
                               f"window-level signals carried by linked variants, not {n} independent biomarkers.",
                               "biomarkers"))
    truth = report.get("truth_recovery") or {}
    wrong = [k.replace("|", " / ") + f": {v.get('verdict')} (expected {v.get('expected')})"
             for k, v in (truth.get("verdicts") or {}).items() if v.get("as_expected") is False]
    if wrong:
        out.append(_caveat("truth_missed", "high", "Planted truth of the simulation not recovered: "
                           + "; ".join(wrong) + ".", "audit"))
    if truth and truth.get("causal_variant_rank") not in (None, 1):
        out.append(_caveat("causal_rank", "medium", f"The planted causal variant {truth.get('causal_variant')} "
                           f"ranks {truth.get('causal_variant_rank')} of {truth.get('n_variants_ranked')} variants.",
                           "biomarkers"))
    order = {"high": 0, "medium": 1, "info": 2}
    return sorted(out, key=lambda c: order[c["severity"]])


# ------------------------------------------------------------------------------------------ methods
def _fmt(x: Any) -> str:
    return f"{x:g}" if isinstance(x, float) else str(x)


def pcs_from(ancestry_markers: dict | None) -> str | None:
    """What the genotype PCs were computed from, by report.json `cohort.ancestry_markers` (the genotype
    table's ancestry_source): "panel" (a marker VCF: the simulated panel or cohort.ancestry_vcf), "regions"
    (no panel: the studied regions' own variants, vcf "cohort"), or None when not recorded."""
    vcf = (ancestry_markers or {}).get("vcf")
    if not vcf:
        return None
    return "regions" if vcf == "cohort" else "panel"


#: what rank's `method` values mean, for the report's methods table (interp.rank.association)
RANK_METHOD_TEXT = {
    "score_spa": "binary phenotype: logistic regression, the efficient score test of each feature with a "
                 "saddle-point approximation of its null distribution in the tail (as SPAtest / SAIGE)",
    "ols": "quantitative phenotype: ordinary least squares of the phenotype on the feature, Student t test",
}


def quantitative_transform_text(rank_config: dict, rank_phenotypes: list[dict] | None) -> str:
    """How rank transformed the quantitative phenotypes before their OLS test, and so the scale of their effects: as
    rank recorded it (report.json `rank_summary.phenotypes`, a quantitative row's `transform`; one rank run applies
    one setting to all of them; a row without it is from before the transform, y as given), else (no rank summary)
    as rank.quantitative_transform says."""
    quant = [ph for ph in rank_phenotypes or [] if ph.get("type") == "quantitative"]
    done = (quant[0].get("transform") or "none") if quant else rank_config.get("quantitative_transform", "rint")
    if done == "rint":
        return (" after the phenotype's rank-based inverse normal transform; effects in SD units of the transformed "
                "phenotype")
    return " of the phenotype as given; effects in the phenotype's own units"


def rank_statistic(families: list[dict] | None, cohort: dict, rank_config: dict,
                   rank_phenotypes: list[dict] | None = None) -> str:
    """The biomarkers' test as rank ran it: the methods its reported rows name (`method`, RANK_METHOD_TEXT;
    both when no row says), the phenotype as the outcome beside the PCs and covariates, the quantitative
    phenotype's transform as rank recorded it (`quantitative_transform_text`), and how effects were
    estimated (`effect_method`: the one-step score estimate, or a full logistic fit, Firth's under separation)."""
    rows = [row for fam in families or [] for row in fam.get("rows", [])]
    used = sorted({str(row["method"]) for row in rows if row.get("method") in RANK_METHOD_TEXT})
    tests = "; ".join(RANK_METHOD_TEXT[m] for m in (used or sorted(RANK_METHOD_TEXT)))
    if not used or "ols" in used:  # "ols" sorts last: the text that follows is the OLS test's
        tests += quantitative_transform_text(rank_config, rank_phenotypes)
    nuisance = f"{cohort.get('n_pcs')} genotype PCs + covariates ({', '.join(cohort.get('covariates', [])) or 'none'})"
    text = f"the phenotype is the outcome, one feature at a time beside {nuisance}. {tests}"
    if not used or "score_spa" in used:
        text += (f"; log-odds effects: a full logistic fit (Firth's penalised likelihood under separation) for the "
                 f"best {rank_config.get('refit_top')} features of each family, the one-step score estimate for "
                 "the others")
    return text


def sae_sparsity(sae: dict) -> str:
    """The `sae` section's architecture with the setting that makes it sparse (k only where k sets the sparsity:
    relu is sparse by its L1 penalty, jumprelu by its L0 penalty)."""
    arch = sae.get("architecture", "topk")
    if arch == "relu":
        return f"relu SAE (L1 coefficient {_fmt(sae.get('l1_coefficient'))})"
    if arch == "jumprelu":
        return f"jumprelu SAE (L0 coefficient {_fmt(sae.get('l0_coefficient'))})"
    if arch in ("batchtopk", "matryoshka"):
        return f"{arch} SAE (k = {sae.get('k')} active features per token on average over a batch)"
    return f"{arch} SAE (k = {sae.get('k')} active features per token)"


def sae_label_rule(labels: dict) -> dict[str, str]:
    """{resampling, multiplicity, thresholds} of the SAE's concept labels (`interp.sae.concepts`) from `sae.labels`, with
    interp.sae.concepts.LabelConfig's defaults where a key is absent."""
    from interp.sae.concepts import LabelConfig

    rule = {**LabelConfig().__dict__, **labels}
    return {
        "resampling": (f"{rule['n_shifts']} circular shifts of the concept tracks along the test bases (the label "
                       "test's null)" if rule.get("n_shifts") else "none"),
        "multiplicity": "concept labels: one-sided binomial test of precision > prevalence on the test blocks, on "
                        "effective token counts (divided by the design effect of runs: Bartlett's formula from the "
                        "unit's and the concept's autocorrelations at lags 1-256, times how often a base is seen), "
                        + "one test per feature, of its candidate concept (chosen on the validation blocks), "
                        + (f"family-wise at alpha {_fmt(rule['alpha'])} by the minimum p of the family under "
                           f"{rule['n_shifts']} circular shifts of the concept tracks along the test bases "
                           "(Westfall-Young min-p; the shifts keep both sides' runs)" if rule.get("n_shifts")
                           else f"Bonferroni over the features at family-wise alpha {_fmt(rule['alpha'])}"),
        "thresholds": f"a feature fires above the threshold of best validation F1 (of {rule['n_thresholds']} levels, "
                      "chosen on the validation blocks); it is labelled with a concept only if, on the test blocks, "
                      f"lift >= {_fmt(rule['min_lift'])}, at least {rule['min_true_positives']} true positives, F1 "
                      "above the always-fires and same-density random baselines, and the binomial test passes; "
                      "else 'unlabelled'"}


def panel_markers_text(ancestry_markers: dict | None, source: str | None) -> str:
    """Which markers of a panel made the PCs, as the ancestry stage recorded it (report.json
    `cohort.ancestry_markers`): the simulated panel's unlinked loci, or the user's panel less its markers within
    `exclude_flank` bases of a studied region (`n_markers_near_regions`); a genotype table from before that
    exclusion (no `exclude_flank`) read the panel whole."""
    m = ancestry_markers or {}
    if source == "simulate":
        return "outside the studied regions (the simulated panel's unlinked loci)"
    if m.get("exclude_flank") is None:
        return "of the marker panel, read whole (its markers inside the studied regions, if any, were not removed)"
    where = (f"within {m['exclude_flank']:,} bases of a studied region" if m["exclude_flank"]
             else "inside a studied region")
    return (f"of the marker panel less its {m.get('n_markers_near_regions', 0)} {where} "
            "(cohort.ancestry_exclude_flank)")


#: the within-ancestry test's null as `audit.null` chooses it (interp.audit.audit_phenotype), for Methods when no
#: audit row records its `null_method`
AUDIT_NULL_TEXT = {
    "permute": "phenotype permuted inside strata",
    "bootstrap": "parametric bootstrap from y ~ strata + PCs + covariates",
    "auto": "phenotype permuted inside the population labels when they are the strata and there are no covariates, "
            "else (PC-bin strata, covariates) a parametric bootstrap from y ~ strata + PCs + covariates",
}


def methods(config: dict, audit: list[dict] | None = None, families: list[dict] | None = None,
            ancestry_markers: dict | None = None, lm: list[dict] | None = None,
            variant_effect: list[dict] | None = None, rank_phenotypes: list[dict] | None = None) -> list[dict]:
    """The statistics of this run as the config set them: [{name, statistic, scheme, resampling,
    multiplicity, thresholds}], one entry per analysis (LM, probes, SAE, audit, biomarkers, and the
    variant-effect burden when `families` has a variant_effect:<model> family). ancestry_markers: report.json
    `cohort.ancestry_markers`, which says where the PCs came from (`pcs_from`). lm: report.json `lm` (the
    built-in model's held-out fit); [] leaves the LM entry out (hub models only: no LM is fitted or scored),
    None (not known) keeps it. variant_effect: report.json `cohort.variant_effect` (each model's variant_effect
    stats, with the `width` it scored on); None: the configured width, capped at the model's context.
    rank_phenotypes: report.json `rank_summary.phenotypes` (the quantitative phenotypes' `transform` as rank tested
    them); None: rank.quantitative_transform of the config."""
    w, p, s = config.get("windows", {}), config.get("probe", {}), config.get("sae", {})
    out = [
        {"name": "Language model fit",
         "statistic": "held-out per-base cross-entropy (nats) of the masked LM, against order-0 and order-3 "
                      "Markov models fitted on the training bases",
         "scheme": f"last {_fmt(w.get('heldout_fraction'))} of each region held out",
         "resampling": "none", "multiplicity": "not applicable", "thresholds": "beats a baseline = lower CE"},
    ] if lm is None or lm else []
    out += [
        {"name": "Linear probes",
         "statistic": f"AUROC, balanced accuracy and MCC of L2 logistic regression (C = {_fmt(p.get('C'))}) "
                      f"for {', '.join(p.get('targets', []))}",
         "scheme": f"grouped k-fold over {w.get('n_blocks')} contiguous genome blocks, overlapping windows "
                   "purged from training; folds lacking a class are skipped and reported",
         "resampling": f"{p.get('n_shuffles')} label shuffle(s) per fold (selectivity control); 3-mer "
                       "frequency control",
         "multiplicity": "none (descriptive)", "thresholds": "none; mean ± SD over folds shown"},
        {"name": "Sparse autoencoder",
         "statistic": f"{sae_sparsity(s)}, {s.get('n_features')} features; held-out FVU, mean L0, dead fraction; "
                      "per feature precision / recall / F1 of 'fires' against per-base labels",
         "scheme": f"layer {s.get('layer')}; windows split by {s.get('split_block_bases')}-base genome blocks, "
                   f"{_fmt(s.get('validation_fraction'))} of them for validation and {_fmt(s.get('test_fraction'))} "
                   "of them held out as test (FVU and L0 are measured there); the tokens of a window that "
                   "straddles two splits are in none (no held-out token has training bases in its context)",
         **sae_label_rule(s.get("labels") or {})},
    ]
    cohort = config.get("cohort", {})
    if cohort.get("enabled"):
        a, r = config.get("audit", {}), config.get("rank", {})
        rows = audit or []
        rules = sorted({str(x["verdict_rule"]) for x in rows if x.get("verdict_rule")})
        mult = sorted({str(x["multiplicity"]) for x in rows if x.get("multiplicity")})
        n_null = sorted({int(x["n_null_replicates"]) for x in rows if _num(x.get("n_null_replicates"))})
        n_max = sorted({int(x["n_null_replicates_max"]) for x in rows if _num(x.get("n_null_replicates_max"))})
        if any("p_within" in x for x in rows) or not rows:
            within = ("within-ancestry test: the larger of two signed root likelihood-ratio statistics of a "
                      "leave-one-out ridge probe score (fitted to the phenotype and to the ancestry model's "
                      "residual) added to logistic phenotype ~ strata + genotype PCs + covariates; signal test: the "
                      "same in phenotype ~ 1 + score; effect size: within-ancestry AUROC of out-of-fold L2 logistic "
                      "probes with a bootstrap interval")
        else:  # an audit table from before the calibrated audit
            within = ("phenotype-probe AUROC under stratified, ancestry-stratified and leave-one-population-out CV "
                      "and after residualising on genotype PCs inside each training fold; an ancestry-only "
                      "baseline; a within-population permutation p")
        thresholds = (f"alpha {a.get('alpha')}, min_effective_n {a.get('min_effective_n')}, fail_within_margin "
                      f"{a.get('fail_within_margin')}, fail_max_within_share {a.get('fail_max_within_share')}")
        if rules:
            thresholds += "; verdict rules: " + " | ".join(rules)
        methods_null = sorted({str(x["null_method"]) for x in rows if x.get("null_method")})
        b = n_max[-1] if n_max else (n_null[-1] if n_null else a.get("max_null_replicates"))
        if any("p_within" in x for x in rows) or not rows:
            # interp.audit.audit_phenotype: p_within's null as the rows record it (else as audit.null decides it),
            # p_signal's the phenotype permuted over all samples
            within_null = "; ".join(methods_null) if methods_null else AUDIT_NULL_TEXT.get(
                str(a.get("null", "auto")), AUDIT_NULL_TEXT["auto"])
            nulls = f"within-ancestry test: {within_null}; signal test: phenotype permuted over all samples"
        else:  # an audit table from before the calibrated audit: one within-population permutation test
            nulls = "; ".join(methods_null) if methods_null else "phenotype permuted inside strata"
        out.append({
            "name": "Ancestry audit (verdicts)",
            "statistic": within,
            "scheme": f"{a.get('n_folds')}-fold stratified CV (L2 logistic, C = {_fmt(a.get('C'))}) for the effect "
                      "sizes; leave-one-out ridge probes for the tests; "
                      + {"panel": "PCs from ancestry markers " + panel_markers_text(ancestry_markers,
                                                                                   cohort.get("source")),
                         "regions": "PCs from the studied regions' own variants (no ancestry marker panel was "
                                    "given, so the regions' variants, causal ones included, define them)",
                         None: "genotype PCs"}[pcs_from(ancestry_markers)],
            "resampling": (f"up to {b} null replicates per test, sequential (Besag-Clifford) ({nulls}); "
                           f"{a.get('bootstrap')} bootstrap resamples for AUROC intervals"),
            "multiplicity": ", ".join(mult) if mult else
            "none across verdicts: each verdict is tested at alpha on its own",
            "thresholds": thresholds,
        })
        scopes = sorted({f["bh_scope"] for f in families or [] if f.get("bh_scope")})
        out.append({
            "name": "Candidate biomarkers",
            "statistic": rank_statistic(families, cohort, r, rank_phenotypes),
            "scheme": "all samples with the phenotype (those without are dropped and counted); effect per allele "
                      "(variants) or per feature SD (model features) with 95% CI",
            "resampling": f"stability: share of {r.get('resamples')} half-sample resamples with the feature in "
                          f"the top {r.get('top_k')}",
            "multiplicity": "Benjamini-Hochberg q within one phenotype and one feature family"
                            + (f" ({len(scopes)} scopes)" if scopes else ""),
            "thresholds": f"features carried by fewer than {r.get('min_carriers')} individuals not tested; q < "
                          f"{r.get('alpha', 0.05):g} (rank.alpha) counted as a discovery; top {r.get('report_top')} "
                          "per family reported",
        })
        ve = sorted({f["family"] for f in families or [] if f.get("kind") == "variant_effect"})
        if ve:
            # interp.embed.variant_effect.score_cohort_variants: min(variant_effect.width, the model's context),
            # recorded as the stats' width
            used = [f"{int(v['width'])}-base window ({v.get('model')})" for v in variant_effect or []
                    if _num(v.get("width"))]
            width = (config.get("variant_effect") or {}).get("width")
            window = (", ".join(used) if used else
                      f"window of up to {width} bases (variant_effect.width, capped at the model's context)" if width
                      else "window of the model's context")
            out.append({
                "name": "Variant-effect burden",
                "statistic": "per sample and window, the sum over the window's scored SNVs of max(-score, 0) x ALT "
                             "dosage; score = the model's zero-shot log p(ALT) - log p(REF) (masked models: the "
                             "variant masked; causal models: the whole window) on the reference "
                             f"{window} centred on the variant (shifted to stay inside its contig), so the burden counts the ALT alleles the model finds unlikely; then tested "
                             "like the model features",
                "scheme": "the windows of the model's window features; " + ", ".join(ve),
                "resampling": "as the candidate biomarkers",
                "multiplicity": "Benjamini-Hochberg q within one phenotype and one variant_effect:<model> family",
                "thresholds": f"windows with at least {r.get('min_carriers')} samples off the modal burden tested",
            })
    return out


#: how interp.embed.run.pool_tokens makes one vector of a window, by the model card's `pooling`
POOLING_TEXT = {"mean": "mean over the window's base-covering tokens", "last": "the window's last base-covering token"}


def pooling_text(models: list[dict] | None) -> str:
    """The probes' window embeddings as the run's model cards pool them (report.json `provenance.models`, each
    card's `pooling`; the registry's default is mean): "mean-pooled window embeddings (...)" when every card
    pools by the mean, else the pooling named, per model where the cards differ."""
    pools = {str(m.get("name")): str((m.get("card") or {}).get("pooling") or "mean") for m in models or []}
    kinds = set(pools.values())
    if not kinds:
        return "pooled window embeddings"
    if kinds == {"mean"}:
        return f"mean-pooled window embeddings ({POOLING_TEXT['mean']})"
    if len(kinds) == 1:
        kind = next(iter(kinds))
        return f"window embeddings pooled as the model card sets it, pooling: {kind} ({POOLING_TEXT.get(kind, kind)})"
    return ("window embeddings pooled as each model card sets it ("
            + "; ".join(f"{m}: {k}, {POOLING_TEXT.get(k, k)}" for m, k in pools.items()) + ")")


def short_reason(text: str, limit: int = 240) -> str:
    """A reason trimmed to one readable sentence (full text stays in the JSON)."""
    text = re.sub(r"\s+", " ", text).strip()
    return text if len(text) <= limit else text[: limit - 1].rsplit(" ", 1)[0] + "…"


def run_characteristics(report: dict) -> dict[str, float]:
    """This run's values on the calibration grid's axes (only those it has)."""
    out: dict[str, float] = {}
    cohort = report.get("cohort") or {}
    n = _num(cohort.get("n_samples"))
    if n is not None:
        out["n_samples"] = n
    sizes = [_num(v) for v in (cohort.get("populations") or {}).values()]
    if sizes:
        out["n_populations"] = float(len(sizes))
        if all(v is not None for v in sizes):
            out["n_per_population"] = float(min(sizes))
    audit_cfg = ((report.get("provenance") or {}).get("config") or {}).get("audit", {})
    # the cap on Monte Carlo null replicates (`permutations` in configs before the calibrated audit)
    perms = _num(audit_cfg.get("max_null_replicates", audit_cfg.get("permutations")))
    if perms is not None:
        out["permutations"] = perms
    return out


def phenotype_counts(audit: list[dict]) -> dict[str, dict]:
    """{phenotype: {n_samples, n_missing, n_cases}} of the audit (the samples analysed, those left out for a
    missing phenotype value), from its first whole-cohort row per phenotype."""
    out: dict[str, dict] = {}
    for a in audit:
        if a.get("phenotype") not in out and not a.get("region"):
            out[a["phenotype"]] = {"n_samples": a.get("n_samples"), "n_missing": a.get("n_missing_phenotype"),
                                   "n_cases": a.get("n_cases")}
    return out


def covariate_labels(details: list[dict]) -> list[str]:
    """The covariates the audit adjusted for, as shown: a categorical one with its one-hot levels against the
    reference level, a numeric one by name (with its note, such as an undeclared integer code)."""
    policy = next((d["covariate_policy"] for d in details if d.get("covariate_policy")), {})
    out = []
    for name, cov in (policy.get("covariates") or {}).items():
        if cov.get("adjusted_for") is False:
            continue
        if cov.get("kind") == "categorical":
            ref = cov.get("reference")
            levels = [str(v) for v in cov.get("levels") or [] if v != ref]
            out.append(f"{name} (categorical: {', '.join(levels)} vs {ref})")
        else:
            out.append(f"{name} ({cov['note']})" if cov.get("note") else name)
    return out


def assemble(report: dict, layer_order: dict[str, list[str]], calibration_rows: list[dict] | None) -> dict:
    """The report's first screen: {model [{name, family, source, checkpoint_sha256}], layers {model:
    [layer]}, data {reference, regions, cohort}, verdicts (worst per phenotype), calibration, caveats
    (high and medium severity; all of them go to report["limitations"])}."""
    prov = report.get("provenance") or {}
    cfg = prov.get("config") or {}
    models = []
    for m in prov.get("models") or []:
        card = m.get("card") or {}
        models.append({"name": m.get("name"), "family": card.get("family"),
                       "source": card.get("hf_id") or ("trained by this run" if card.get("family") == "tiny"
                                                      else m.get("checkpoint")),
                       "checkpoint_sha256": m.get("checkpoint_sha256")})
    ref = cfg.get("reference") or {}
    data: dict[str, Any] = {
        "reference": ref.get("fasta"),
        "annotation": ref.get("annotation"),
        "regions": [f"{r.get('name')} = {r.get('contig')}:{r.get('start')}-{r.get('end')}"
                    for r in cfg.get("regions") or []],
        "n_windows": None,
    }
    cohort = report.get("cohort")
    if cohort:
        data["cohort"] = {
            "source": cohort.get("source"),
            "regions": (cohort.get("validation") or {}).get("regions") or (cohort.get("haplotypes") or {}).get("regions"),
            "n_samples": cohort.get("n_samples"),
            "populations": cohort.get("populations"),
            "n_variants": cohort.get("n_variants"),
            "n_variants_pca": cohort.get("n_variants_pca"),
            "n_ancestry_markers": (cohort.get("ancestry_markers") or {}).get("n_markers"),
            "ancestry_pcs_from": pcs_from(cohort.get("ancestry_markers")),
            "ancestry_markers_used": (panel_markers_text(cohort.get("ancestry_markers"), cohort.get("source"))
                                      if pcs_from(cohort.get("ancestry_markers")) == "panel" else None),
            "phenotypes": list(OrderedDict.fromkeys(a["phenotype"] for a in report.get("audit") or [])),
            "phenotype_counts": phenotype_counts(report.get("audit") or []),
            "covariates": covariate_labels(report.get("audit_details") or []),
        }
    out = {"model": models, "layers": layer_order, "data": data,
           "verdicts": worst_verdicts(report.get("audit") or [], layer_order),
           "calibration": calibration_summary(calibration_rows, run_characteristics(report)) if cohort else
           {"available": False, "rows": [], "note": "No cohort in this run: no verdicts to calibrate."}}
    caveats = detect_caveats({**report, "summary": out}, layer_order)
    # the calibration box of the summary already says when calibration is missing
    out["caveats"] = [c for c in caveats if c["severity"] in ("high", "medium") and c["id"] != "no_calibration"]
    return out | {"_all_caveats": caveats}
