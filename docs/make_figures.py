"""Regenerate the README's figures and the stored control run the comparison tests use.

Trains two more runs of the sample's setting (sample_checkpoints/make_samples.py) that differ only in AdamW's
weight decay: 1.0, which groks sooner, and 0, which never generalises. Analyses them and the sample run with
grokmon's defaults (one thread), then writes:

- docs/sample_report.png: `grokmon report` of the sample run;
- docs/compare.png: `grokmon compare` of the three runs;
- tests/data/no_grok.parquet and tests/data/no_grok_curve.csv: the weight-decay-0 run's results and its
  training curve (accuracy on the whole train and test sets at every saved step), the non-grokking side of
  tests/test_compare.py.

About five minutes on one CPU core:

    python docs/make_figures.py
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import grokmon

ROOT = Path(__file__).resolve().parent.parent
RUNS = {"wd 1.0": 1.0, "wd 0 (no grokking)": 0.0}  # name in the figure -> weight decay


def train(folder: Path, weight_decay: float) -> Path:
    subprocess.run([sys.executable, str(ROOT / "sample_checkpoints" / "make_samples.py"), "--out", str(folder),
                    "--weight-decay", str(weight_decay)], check=True, stdout=subprocess.DEVNULL)
    return folder


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="grokmon-figures-") as scratch:
        scratch = Path(scratch)
        sample = scratch / "sample.parquet"
        grokmon.analyze(ROOT / "sample_checkpoints", sample, threads=1)
        results = {"wd 0.5 (the sample)": sample}
        for name, weight_decay in RUNS.items():
            folder = train(scratch / f"wd{weight_decay:g}", weight_decay)
            grokmon.analyze(folder, threads=1)
            results[name] = folder / "grokmon.parquet"
        control = scratch / f"wd{RUNS['wd 0 (no grokking)']:g}"
        data = ROOT / "tests" / "data"
        data.mkdir(exist_ok=True)
        shutil.copyfile(control / "grokmon.parquet", data / "no_grok.parquet")
        shutil.copyfile(control / "training_curve.csv", data / "no_grok_curve.csv")
        grokmon.report(sample, ROOT / "docs" / "sample_report.png")
        comparison = grokmon.compare(list(results.values()), ROOT / "docs" / "compare.png", names=list(results))
        print(comparison.headline())


if __name__ == "__main__":
    main()
