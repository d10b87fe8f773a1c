"""Build the corpus: train every run, analyse it with grokmon and store it as a results fixture.

    nice -n 10 python -m corpus.build                 # every run not stored yet (CPU minutes each)
    nice -n 10 python -m corpus.build --run cnn/c16-wd0 --force
    nice -n 10 python -m corpus.build --sample        # re-analyse sample_checkpoints/ into its fixture
    nice -n 10 python -m corpus.build --validation    # the runs kept out of fitting (corpus/validation.py)
    nice -n 10 python -m corpus.build --trials        # regression runs of new users' kinds (corpus/trials.py)

The sample run's results (sample_checkpoints/, analysed with the defaults: 512 points) are stored as
tests/fixtures/sample.parquet; its truth curve is sample_checkpoints/training_curve.csv.

Each run becomes tests/fixtures/corpus/FAMILY--RUN.parquet: the results table of `grokmon analyze`
(POINTS probe points per split, one thread; per-layer LC dropped) whose metadata also holds, under
`corpus`, the family, the run's settings, the collapse event if any, and the truth curve (accuracy on the
whole train and test sets at every saved step). Run from the repository root (the CNN factory is
`corpus.cnn:build`). Needs the `corpus` extra (scikit-learn) and torch.

A family is a module with `RUNS` (name -> task arguments) and `task(**arguments) -> Task`, listed in
corpus/families.py.
"""

from __future__ import annotations

import argparse
import tempfile
from dataclasses import replace
from pathlib import Path

import torch

from . import collapse, trials, validation
from .common import analyse_and_store, describe, slim, train
from .families import FAMILIES
from .load import FIXTURES, SAMPLE_FIXTURE, TRIALS, VALIDATION


def makers(plain: dict, collapsing: dict, overrides: dict | None = None) -> dict[str, tuple[str, str, callable]]:
    """"family/run" -> (family, scenario, a function making its Task), from "family/run" -> task arguments
    (plain runs) and "family/run" -> (family, events, task arguments) (collapsing runs); `overrides`:
    "family/run" -> Task fields to replace (`save_every`, `schedule`; the others keep the family's)."""
    out = {}
    for key, arguments in plain.items():
        family = key.split("/")[0]
        out[key] = (family, "plain", lambda m=FAMILIES[family], a=arguments: m.task(**a))
    for key, (family, events, arguments) in collapsing.items():
        out[key] = (family, "collapse", lambda f=family, e=events, a=arguments: collapse.task(f, e, a))
    for key, fields in (overrides or {}).items():
        family, scenario, make = out[key]
        out[key] = (family, scenario, lambda m=make, f=fields: replace(m(), **f))
    return out


def runs() -> dict[str, tuple[str, str, callable]]:
    """The corpus: every family's RUNS and corpus.collapse.RUNS."""
    plain = {f"{family}/{name}": arguments
             for family, module in FAMILIES.items() for name, arguments in module.RUNS.items()}
    return makers(plain, {f"{family}/{name}": (family, events, arguments)
                          for name, (family, events, arguments) in collapse.RUNS.items()})


def fixture_path(key: str, folder: Path = FIXTURES) -> Path:
    family, name = key.split("/")
    return folder / f"{family}--{name}.parquet"


def build(key: str, family: str, scenario: str, make, folder: Path = FIXTURES) -> None:
    task = make()
    about = {"family": family, "run": key.split("/")[1], "scenario": scenario, "settings": describe(task)}
    with tempfile.TemporaryDirectory(prefix="grokmon-corpus-") as scratch:
        truth = train(task, Path(scratch))
        analyse_and_store(Path(scratch), fixture_path(key, folder), task, truth, about)


def build_sample() -> None:
    """Analyse sample_checkpoints/ with the defaults into tests/fixtures/sample.parquet."""
    import grokmon
    from grokmon.results.parquet import read_results, write_results

    sample = Path(__file__).resolve().parents[1] / "sample_checkpoints"
    with tempfile.TemporaryDirectory(prefix="grokmon-sample-") as folder:
        scratch = Path(folder) / "grokmon.parquet"
        grokmon.analyze(sample, scratch, device="cpu", threads=1)
        frame, metadata = read_results(scratch)
    write_results(SAMPLE_FIXTURE, slim(frame).to_dict("records"), metadata)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", action="append", help="FAMILY/RUN to build (repeatable; default: all)")
    parser.add_argument("--force", action="store_true", help="rebuild runs already stored")
    parser.add_argument("--sample", action="store_true", help="only re-analyse the sample run into its fixture")
    parser.add_argument("--validation", action="store_true", help="the validation runs instead of the corpus")
    parser.add_argument("--trials", action="store_true", help="the regression runs (corpus/trials.py) instead")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.sample:
        build_sample()
        return
    if args.validation:
        todo, folder = makers(validation.PLAIN, validation.COLLAPSE, validation.OVERRIDES), VALIDATION
    elif args.trials:
        todo, folder = makers(trials.PLAIN, trials.COLLAPSE, trials.OVERRIDES), TRIALS
    else:
        todo, folder = runs(), FIXTURES
    unknown = set(args.run or ()) - set(todo)
    if unknown:
        raise SystemExit(f"unknown run(s) {', '.join(sorted(unknown))}; known: {', '.join(todo)}")
    folder.mkdir(parents=True, exist_ok=True)
    for key, (family, scenario, make) in todo.items():
        if (args.run and key not in args.run) or (fixture_path(key, folder).exists() and not args.force):
            continue
        print(f"{key} ({scenario})", flush=True)
        build(key, family, scenario, make, folder)


if __name__ == "__main__":
    main()
