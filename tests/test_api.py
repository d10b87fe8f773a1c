"""The Python API as a user calls it: `grokmon.analyze`, `grokmon.phases`, `grokmon.report`, `grokmon.info`."""

import pandas as pd

import grokmon


def test_api_functions_stay_callable_after_every_submodule_is_imported(make_run, tmp_path):
    run = make_run()
    df = grokmon.analyze(run)
    assert isinstance(df, pd.DataFrame) and set(df["split"]) == {"train", "test", "random"}

    first = grokmon.phases(df)
    again = grokmon.phases(run / "grokmon.parquet")
    assert isinstance(first, grokmon.PhaseReport) and first.to_dict() == again.to_dict()

    figure = grokmon.report(run / "grokmon.parquet", tmp_path / "run.png")
    assert figure.stat().st_size > 1000
    assert callable(grokmon.phases) and callable(grokmon.report) and callable(grokmon.analyze)
    assert grokmon.phases(df, grokmon.PhaseThresholds(min_checkpoints=99)).advice == "inconclusive"
    assert grokmon.PhaseThresholds().min_checkpoints != 99


def test_cli_version_and_help_answer_without_torch():
    import subprocess
    import sys

    code = ("import sys; from grokmon.cli import app; "
            "app(['--version'], standalone_mode=False); print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["grokmon", grokmon.__version__, "False"]
