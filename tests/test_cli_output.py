"""How the CLI prints to stdout: wrapped for a reader at a terminal, whole lines for a pipe."""

from grokmon.cli.app import _stdout


def test_a_terminal_gets_lines_wrapped_at_words_and_a_pipe_gets_them_whole(monkeypatch):
    monkeypatch.delenv("FORCE_COLOR", raising=False)
    assert _stdout().soft_wrap  # pytest's stdout is no terminal: a reason stays one line for grep and scripts
    monkeypatch.setenv("FORCE_COLOR", "1")  # rich treats the output as a terminal
    console = _stdout()
    assert not console.soft_wrap
    console.width = 40
    with console.capture() as captured:
        console.print("reason: generalisation at step 8000: robust accuracy 0.947 still rising")
    assert [len(line) <= 40 for line in captured.get().splitlines()] == [True, True]
    assert "0.947" in captured.get().replace("\n", " ").split()


def test_a_narrow_terminal_cuts_no_number_or_word_of_the_comparison(tmp_path):
    from pathlib import Path

    from typer.testing import CliRunner

    from grokmon.cli import app

    fixtures = Path(__file__).parent / "fixtures"
    runs = [str(fixtures / "sample.parquet"), str(fixtures / "corpus" / "transformer--p43-wd2.parquet")]
    result = CliRunner().invoke(app, ["compare", *runs], env={"COLUMNS": "50"})
    assert result.exit_code == 0
    assert "…" not in result.stdout
    verdicts = (["accuracy", "stop"], ["accuracy", "keep-training"])
    rows = [row for row in map(str.split, result.stdout.splitlines()) if row[1:3] in verdicts]
    assert [row[0] for row in rows] == ["sample", "transfor"]  # names fold; at least 8 characters stand
    assert rows[0][1:] == ["accuracy", "keep-training", "0.88", "55", "1431", "2760", "3550", "8000", "8000", "1.000"]


def test_a_usage_error_is_one_line_on_stderr_and_exit_2():
    """Through the console script's entry point (CliRunner calls the Typer app, whose errors are a box of lines)."""
    import subprocess
    import sys

    def run(*args):
        return subprocess.run([sys.executable, "-c", "from grokmon.cli import main; main()", *args],
                              capture_output=True, text=True, timeout=120)

    for args, words in ((("phases", "x.parquet", "--mode", "foo"), "Invalid value for '--mode'"),
                        (("analyze",), "Missing argument 'CKPT_DIR'"),
                        (("analyze", "--bogus", "x"), "No such option: --bogus"),
                        (("bogus",), "No such command 'bogus'")):
        result = run(*args)
        assert result.returncode == 2, result.stderr
        assert len(result.stderr.splitlines()) == 1 and words in result.stderr and "--help" in result.stderr, result.stderr
        assert result.stdout == ""
    bare = run()
    assert bare.returncode == 2 and "analyze" in bare.stdout and "phases" in bare.stdout  # the help, whole
    assert run("--version").returncode == 0
