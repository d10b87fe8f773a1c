"""Errors a user can cause. The CLI turns each into one line on stderr and exit code 1."""

import re


class GrokmonError(Exception):
    """Base class: something about the inputs or the environment that the user can fix."""


class CheckpointError(GrokmonError):
    """A checkpoint directory or file that cannot be found, parsed, ordered or trusted."""


class NoCheckpointsError(CheckpointError):
    """A run folder that holds no checkpoint (yet): `grokmon watch` waits for the first one."""


class UnreadableCheckpoints(CheckpointError):
    """None of the checkpoints to analyse can be read, so there is nothing to build the model from; `failures`
    holds (checkpoint, message, identity columns) for each, so that each becomes its error rows all the same."""

    def __init__(self, message: str, failures: tuple = ()):
        super().__init__(message)
        self.failures = tuple(failures)  # kept through pickling (a Ray worker's): BaseException keeps __dict__


class ModelError(GrokmonError):
    """The network cannot be built, or the weights do not fit it."""


class ProbeError(GrokmonError):
    """Probe data that is missing, malformed, or does not fit the model."""


class ConfigError(GrokmonError):
    """Options, manifest entries or a results file whose configuration does not fit."""


class ResultsError(GrokmonError):
    """A results Parquet file that cannot be read, written, or is not grokmon's."""


class ExecutorError(GrokmonError):
    """Workers that cannot be started or all died (several devices, Ray)."""


def first_line(exc: BaseException, limit: int = 200) -> str:
    """The first line of an exception's message, never cut inside a sentence: a line longer than `limit` keeps
    the sentences that end within it (its first sentence whole when even that is longer); the exception's type
    name when it has no message.

    >>> first_line(ValueError("shape mismatch\\n  at layer 2"))
    'shape mismatch'
    >>> first_line(RuntimeError("Weights only load failed. This file can still be loaded, to do so ..."), limit=30)
    'Weights only load failed.'
    """
    lines = str(exc).strip().splitlines()
    if not lines:
        return type(exc).__name__
    line = lines[0].strip()
    if len(line) <= limit:
        return line
    ends = [match.end() for match in re.finditer(r"[.!?](?=\s)", line)]
    within = [end for end in ends if end <= limit]
    return line[:within[-1]] if within else line[:ends[0]] if ends else line


def death_cause(exc: BaseException) -> str:
    """What a worker that died raised, in one line: a remote worker's error (Ray's) carries the worker's
    traceback in its message, whose last line names the exception raised there; any other, its type and first
    line.

    >>> death_cause(RuntimeError("The actor died\\nTraceback (most recent call last):\\n  File x\\nImportError: no"))
    'ImportError: no'
    >>> death_cause(MemoryError("out of memory"))
    'MemoryError: out of memory'

    A folder named grokmon where the worker started (Ray puts the driver's working directory first on a worker's
    import path) is imported instead of the package, as a namespace package of unknown location; that is said:

    >>> death_cause(ImportError("cannot import name '__version__' from 'grokmon' (unknown location)")).split(": ")[-1]
    'a folder named grokmon in the working directory shadows the grokmon package'
    """
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    if len(lines) > 1 and any(line.startswith("File ") for line in lines):
        cause = lines[-1]
    else:
        cause = f"{type(exc).__name__}: {first_line(exc)}"
    if "from 'grokmon' (unknown location)" in cause:
        cause += ": a folder named grokmon in the working directory shadows the grokmon package"
    return cause


def interrupt_in(exc: BaseException) -> KeyboardInterrupt | None:
    """The Ctrl-C or SIGTERM (a KeyboardInterrupt) in `exc`'s chain of causes and contexts, if any: `exc` itself, or
    what it was raised from or while handling. A signal that lands inside torch's own bookkeeping (a
    TorchFunctionMode's push and pop) makes its clean-up raise a RuntimeError ("trying to pop from empty mode
    stack") in the interrupt's place.

    >>> def clean_up_failed():
    ...     try:
    ...         raise KeyboardInterrupt
    ...     finally:
    ...         raise RuntimeError("clean-up failed")
    >>> try:
    ...     clean_up_failed()
    ... except RuntimeError as exc:
    ...     type(interrupt_in(exc)).__name__
    'KeyboardInterrupt'
    >>> interrupt_in(RuntimeError("a plain failure")) is None
    True
    """
    chain, seen = [exc], set()
    while chain:
        link = chain.pop()
        if link is None or id(link) in seen:
            continue
        seen.add(id(link))
        if isinstance(link, KeyboardInterrupt):
            return link
        chain += [link.__cause__, link.__context__]
    return None


def reraise_interrupt(exc: BaseException) -> None:
    """Raise the interrupt in `exc`'s chain (`interrupt_in`), if any: a catch-all that writes a failed checkpoint's
    rows, or passes over a file it cannot read, must not lose a Ctrl-C or SIGTERM (nor write a healthy checkpoint
    as an error)."""
    interrupt = interrupt_in(exc)
    if interrupt is not None:
        raise interrupt


def error_message(exc: BaseException) -> str:
    """The one-line message of a failed checkpoint: grokmon's own, or the exception's type and first line.

    >>> error_message(RuntimeError("boom\\nat line 2"))
    'RuntimeError: boom'
    """
    if isinstance(exc, GrokmonError):
        return str(exc)
    return f"{type(exc).__name__}: {first_line(exc, 300)}"


def failure_kind(error: str, checkpoint: str) -> str:
    """A checkpoint's error message with its own name, the numbers and the quoted names in it taken out, so that
    one mistake hitting many checkpoints (a model that fits none of them, corrupt files whose garbage header
    lengths differ, NaN in different weights) reads as one failure.

    >>> failure_kind("step_5.pt: empty file", "step_5.pt") == failure_kind("step_9.pt: empty file", "step_9.pt")
    True
    >>> failure_kind("a.pt: weight '0.weight' holds NaN", "a.pt") == failure_kind("b.pt: weight '4.weight' holds NaN", "b.pt")
    True
    >>> failure_kind("a.pt: empty file", "a.pt") == failure_kind("b.pt: holds NaN", "b.pt")
    False
    """
    text = str(error).replace(str(checkpoint), "<checkpoint>")
    return re.sub(r"\d+", "<n>", re.sub(r"'[^']*'", "'<name>'", text))
