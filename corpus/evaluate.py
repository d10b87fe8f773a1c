"""Held-out evaluation of both modes on the corpus: every family judged by the model and calibrations fitted
without it, at every checkpoint of every run (the verdict the CI recipe would have given there).

    python -m corpus.evaluate          # Markdown tables for docs/phases.md; needs the `corpus` extra
    python -m corpus.evaluate --sweep  # accuracy mode's plateau span and tolerance against the checks
    python -m corpus.evaluate --corpus # the runs of the corpus
    python -m corpus.evaluate --validation  # the shipped model on the runs kept out of fitting

Per mode: precision and recall of `stop` and `roll-back` against the true advice, false stops and false
roll-backs, the checks of corpus/checks.py, and a calibration table (confidence against the share right).
"""

from __future__ import annotations

import itertools
import sys
from collections import Counter

import numpy as np

from grokmon.phasing import classify
from grokmon.phasing.types import ADVICE_FOR_PHASE, PhaseThresholds

from . import checks
from .fit import choose, fold_models, prepare_all
from .load import VALIDATION, corpus_runs

BINS = (0.0, 0.3, 0.5, 0.6, 0.7, 0.8, 0.9, 1.01)


def replay(prepared, folds, mode: str) -> list[tuple]:
    """(run, report) for every run, each judged by its family's held-out Fitted."""
    return [(p.run, classify(p.run.table, mode=mode, fitted=folds[p.run.family])) for p in prepared]


def scores(judged, mode: str) -> dict:
    least = PhaseThresholds().min_checkpoints  # fewer are `inconclusive` with a capped confidence by design
    rows = [(run, v, run.advice[i], run.test[i]) for run, report in judged for i, v in enumerate(report.history)
            if i + 1 >= least]
    out = {}
    for advice in ("stop", "roll-back"):
        said = [r for r in rows if r[1].advice == advice]
        true = [r for r in rows if r[2] == advice]
        hit = [r for r in said if r[2] == advice]
        out[advice] = (len(hit) / len(said) if said else float("nan"), len(hit) / len(true) if true else float("nan"),
                       len(said) - len(hit), len(said), len(true))
    out["checks"] = {run.name: checks.all_checks(run, report, mode) for run, report in judged}
    out["final"] = Counter((run.advice[-1], report.advice) for run, report in judged)
    calibration = []
    for lo, hi in zip(BINS[:-1], BINS[1:]):
        inside = [r for r in rows if r[1].phase is not None and lo <= r[1].confidence < hi]
        right = [r for r in inside if _underlying(r[1], mode) == r[2]]
        calibration.append((lo, min(hi, 1.0), len(inside), np.mean([r[1].confidence for r in inside]) if inside else np.nan,
                            len(right) / len(inside) if inside else np.nan))
    out["calibration"] = calibration
    out["inconclusive"] = sum(r[1].advice == "inconclusive" for r in rows) / len(rows)
    return out


def _underlying(verdict, mode: str) -> str:
    """The advice a verdict's confidence is about (an `inconclusive` verdict's phase's advice)."""
    return verdict.advice if verdict.advice != "inconclusive" else ADVICE_FOR_PHASE[verdict.phase]


def corpus_table(runs) -> str:
    """Runs (corpus.load.Run): family, scenario, checkpoints, final accuracies, the true phases in order."""
    lines = ["| family | run | scenario | checkpoints | last step | final train / test | true phases |",
             "|---|---|---|---:|---:|---|---|"]
    for run in sorted(runs, key=lambda r: (r.family, r.name)):
        phases = [ph for k, ph in enumerate(run.phases) if k == 0 or ph != run.phases[k - 1]]
        lines.append(f"| {run.family} | {run.name} | {run.scenario} | {len(run.steps)} | {int(run.steps[-1])} | "
                     f"{run.train[-1]:.2f} / {run.test[-1]:.2f} | {' → '.join(phases)} |")
    return "\n".join(lines)


def markdown(mode: str, result: dict, judged_by: str = "held out by family", where: str = "held-out runs") -> str:
    lines = [f"### {mode} mode ({judged_by})", "",
             "| advice | precision | recall | false (said, truth other) | said | true |", "|---|---:|---:|---:|---:|---:|"]
    for advice in ("stop", "roll-back"):
        p, r, false, said, true = result[advice]
        lines.append(f"| {advice} | {p:.2f} | {r:.2f} | {false} | {said} | {true} |")
    lines += ["", f"Checkpoints with an `inconclusive` verdict: {result['inconclusive']:.0%}.", "",
              "Calibration: every verdict from the fifth checkpoint on, by its confidence; right = the advice it gives "
              "(an `inconclusive` verdict's: its phase's) is the true advice there.", "",
              "| confidence | verdicts | mean confidence | share right |", "|---|---:|---:|---:|"]
    for lo, hi, count, mean, share in result["calibration"]:
        lines.append(f"| {lo:.1f}–{hi:.1f} | {count} | {mean:.2f} | {share:.2f} |")
    lines += ["", "| true advice at the end | verdict | runs |", "|---|---|---:|"]
    lines += [f"| {t} | {s} | {n} |" for (t, s), n in sorted(result["final"].items())]
    failed = {name: v for name, v in result["checks"].items() if v}
    lines += ["", f"Checks failed on {where}: {sum(map(len, failed.values()))} in {len(failed)} runs."]
    lines += [f"- {name}: {'; '.join(v)}" for name, v in failed.items()]
    return "\n".join(lines)


def sweep(prepared, folds) -> str:
    """Accuracy mode's plateau span and tolerance against the checks: the table docs/phases.md shows."""
    lines = ["| plateau_decades | plateau_gain | early stops | other failed checks | stop recall |",
             "|---:|---:|---:|---:|---:|"]
    for decades, gain in itertools.product((0.2, 0.3, 0.4), (0.01, 0.02, 0.03)):
        th = PhaseThresholds(plateau_decades=decades, plateau_gain=gain)
        judged = [(p.run, classify(p.run.table, th, mode="accuracy", fitted=folds[p.run.family])) for p in prepared]
        early = sum(len(checks.early_stops(run, r.history)) for run, r in judged)
        other = sum(len(checks.all_checks(run, r, "accuracy")) for run, r in judged) - early
        lines.append(f"| {decades} | {gain} | {early} | {other} | {scores(judged, 'accuracy')['stop'][1]:.2f} |")
    return "\n".join(lines)


def validation() -> str:
    """The shipped model on the validation runs (corpus/validation.py), both modes: the runs and the tables."""
    runs = corpus_runs(VALIDATION)
    if not runs:
        raise SystemExit(f"no validation runs in {VALIDATION}: python -m corpus.build --validation")
    parts = [corpus_table(runs)]
    for mode in ("accuracy", "geometry"):
        judged = [(run, classify(run.table, mode=mode)) for run in runs]
        parts.append(markdown(mode, scores(judged, mode), "validation runs, shipped model", "validation runs"))
    return "\n\n".join(parts)


def main() -> None:
    if "--validation" in sys.argv:
        print(validation())
        return
    prepared = prepare_all()
    c, temper = choose(prepared)
    folds, _ = fold_models(prepared, c, temper)
    families = Counter(p.run.family for p in prepared)
    print(f"corpus: {len(prepared)} runs, {sum(len(p.run.steps) for p in prepared)} checkpoints, families "
          + ", ".join(f"{f} ({n})" for f, n in sorted(families.items())) + f"; C={c}, temper={temper}\n")
    if "--sweep" in sys.argv:
        print(sweep(prepared, folds))
        return
    if "--corpus" in sys.argv:
        print(corpus_table([p.run for p in prepared]))
        return
    for mode in ("accuracy", "geometry"):
        print(markdown(mode, scores(replay(prepared, folds, mode), mode)), "\n")


if __name__ == "__main__":
    main()
