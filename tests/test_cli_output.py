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
