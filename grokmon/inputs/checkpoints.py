"""Find and order the checkpoints of one training run.

Where they lie: `layouts`; their steps: `steps`; still being written: `in_progress`; loading: `weights` (no code
from a checkpoint ever runs). The probe data file and the manifest are never checkpoints.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path

from ..errors import CheckpointError, NoCheckpointsError
from .in_progress import abandoned, in_progress
from .layouts import LAST_COPY, Candidate, find_candidates
from .steps import WEIGHT_SUFFIXES, missing_step_advice, numbers_saves, step_from_name, stored_step, \
    trainer_state_step
from .weights import load_checkpoint, unwrap_state_dict

__all__ = ["Checkpoint", "FoundCheckpoints", "check_directory", "discover_checkpoints", "find_checkpoints",
           "load_checkpoint", "step_from_name", "unwrap_state_dict"]

_HF_FOLDER = re.compile(r"^checkpoint-\d+$")
_COPY_NUMBER = re.compile(r"-v(\d+)(?=\.ckpt$)", re.IGNORECASE)  # Lightning's epoch=0-step=4-v1.ckpt


@dataclass(frozen=True)
class Checkpoint:
    """One checkpoint of the run: its step, where it lies, and the weight files that make it up."""

    step: int
    path: Path
    files: tuple[Path, ...]
    name: str  # path relative to the checkpoint directory, as written in the results
    format: str  # "safetensors", "pickle" or "dcp", and "(N shards)" when split


@dataclass(frozen=True)
class FoundCheckpoints:
    """The run's checkpoints in step order, what the user should know about them (one line each), and those still
    being written: (name, why), skipped."""

    checkpoints: tuple[Checkpoint, ...]
    notes: tuple[str, ...] = ()
    in_progress: tuple[tuple[str, str], ...] = ()

    def messages(self) -> tuple[str, ...]:
        """The notes and a line per checkpoint in progress, as the CLI shows them."""
        return (*(f"{name}: {why}; skipped, the next analyze measures it" for name, why in self.in_progress),
                *self.notes)


@dataclass(frozen=True)
class _Stepped:
    candidate: Candidate
    name: str
    step: int


def _format_of(path: Path, files: tuple[Path, ...]) -> str:
    if path.is_dir() and any(f.suffix == ".distcp" for f in files):
        return "dcp"
    kinds = {"safetensors" if f.suffix == ".safetensors" else "pickle" for f in files}
    kind = "+".join(sorted(kinds))
    return kind if len(files) == 1 else f"{kind} ({len(files)} shards)"


def check_directory(ckpt_dir: Path) -> None:
    """CheckpointError unless `ckpt_dir` is an existing directory."""
    if not ckpt_dir.exists():
        raise CheckpointError(f"{ckpt_dir}: no such directory; give the folder holding the run's checkpoints")
    if not ckpt_dir.is_dir():
        raise CheckpointError(f"{ckpt_dir}: not a directory; give the folder holding the run's checkpoints")


def discover_checkpoints(ckpt_dir: Path, exclude: set[Path] = frozenset()) -> list[Checkpoint]:
    """Every complete checkpoint of the run in `ckpt_dir`, in step order (see `find_checkpoints`)."""
    return list(find_checkpoints(ckpt_dir, exclude).checkpoints)


def find_checkpoints(ckpt_dir: Path, exclude: set[Path] = frozenset(), weights: str | None = None,
                     steps: dict[str, int] | None = None) -> FoundCheckpoints:
    """The run's checkpoints in `ckpt_dir`, in step order, and those still being written.

    The step comes from `steps` (the manifest's `[steps]` table: checkpoint name -> step), else from what the
    checkpoint stores, else from its name. `weights` picks one model in folders that hold several. Files in
    `exclude` (probe data) are never checkpoints. CheckpointError when a step is missing, shared or a save count.
    """
    ckpt_dir = Path(ckpt_dir)
    check_directory(ckpt_dir)
    exclude = {Path(p).resolve() for p in exclude}
    now, located, writing, left = time.time(), [], [], []
    candidates = find_candidates(ckpt_dir, exclude, weights)
    if weights is not None and candidates and not any(c.path.is_dir() for c in candidates):
        raise CheckpointError(
            f"{ckpt_dir}: --weights {weights} (or weights in grokmon.toml) picks one model in checkpoint folders that "
            f"hold several, as accelerate's save_state writes them; the checkpoints here are single files "
            f"({candidates[0].path.name}, ...), each one model: drop --weights")
    for candidate in candidates:
        name = candidate.path.relative_to(ckpt_dir).as_posix()
        why = in_progress(candidate.path, candidate.files, now)
        if why:
            writing.append((name, why))
            continue
        located.append((candidate, name))
        why = abandoned(candidate.path, candidate.files, now)
        left += [f"{name}: {why}"] if why else []
    stepped = _with_steps(ckpt_dir, located, steps or {})
    if not stepped and not writing:
        raise NoCheckpointsError(
            f"{ckpt_dir}: no checkpoints found (looked for {', '.join('*' + s for s in WEIGHT_SUFFIXES)}, "
            "checkpoint-N/ and torch.distributed.checkpoint folders)"
        )
    kept, notes = _one_save_per_step(ckpt_dir, _without_last_copies(stepped))
    checkpoints = tuple(Checkpoint(s.step, s.candidate.path, s.candidate.files, s.name,
                                   _format_of(s.candidate.path, s.candidate.files))
                        for s in sorted(kept, key=lambda s: s.step))
    return FoundCheckpoints(checkpoints, tuple(left + notes), tuple(writing))


def _step_of(candidate: Candidate, name: str, table: dict[str, int]) -> tuple[int | None, str | None]:
    """The candidate's step, or None and the reason it could not be read (None when it stores none)."""
    if name in table:
        return table[name], None
    try:
        stored, problem = stored_step(candidate.path, candidate.files), None
    except CheckpointError as exc:  # unreadable: the name may still give the step
        stored, problem = None, str(exc)
    if stored is not None or numbers_saves(candidate.path):
        return stored, problem
    step = step_from_name(candidate.path.name)
    return step, (problem if step is None else None)


def _with_steps(ckpt_dir: Path, located: list[tuple[Candidate, str]], table: dict[str, int]) -> list[_Stepped]:
    unknown = sorted(set(table) - {name for _, name in located})
    if unknown:
        raise CheckpointError(f"{ckpt_dir}: grokmon.toml [steps] names {', '.join(unknown)}, which is not a "
                              "checkpoint here; use the names `grokmon info` lists")
    stepped, nameless, counted, problems = [], [], [], []
    for candidate, name in located:
        step, problem = _step_of(candidate, name, table)
        if step is not None:
            stepped.append(_Stepped(candidate, name, step))
        elif numbers_saves(candidate.path):
            counted.append(name)
        else:
            nameless.append((candidate, name))
            problems += [problem] if problem else []
    if counted:
        raise CheckpointError(
            f"{ckpt_dir}: {_few(counted)}: accelerate's automatic_checkpoint_naming numbers saves (checkpoint_0, "
            "checkpoint_1, ...), not training steps, and these folders store no step; register an object whose "
            "state_dict() holds {'step': step} with accelerator.register_for_checkpointing(...), or list the steps "
            f"in grokmon.toml under [steps] (\"{counted[0]}\" = 500)"
        )
    final, nameless = _trainer_final_model(ckpt_dir, stepped, nameless)
    stepped += final
    if problems and nameless:
        raise CheckpointError(problems[0])
    if nameless:
        names = [name for _, name in nameless]
        raise CheckpointError(f"{ckpt_dir}: no training step in the name or metadata of {', '.join(names)}; "
                              f"{missing_step_advice(names)}")
    return stepped


def _trainer_final_model(ckpt_dir: Path, stepped: list[_Stepped],
                         nameless: list[tuple[Candidate, str]]) -> tuple[list[_Stepped], list[tuple[Candidate, str]]]:
    """A Trainer output_dir: the step-less weights beside checkpoint-N/ are trainer.save_model()'s final copy.
    It is the run's newest state when the output_dir's trainer_state.json names a step that no checkpoint-N/
    holds; otherwise a copy of one of them, and dropped. Returns (that checkpoint, if any; the still nameless)."""
    if not any(_HF_FOLDER.match(s.candidate.path.name) for s in stepped):
        return [], nameless
    final = [(c, n) for c, n in nameless if "/" not in n and c.path.is_file()]
    rest = [entry for entry in nameless if entry not in final]
    final_step = trainer_state_step(ckpt_dir)
    if len(final) == 1 and final_step is not None and final_step not in {s.step for s in stepped}:
        return [_Stepped(final[0][0], final[0][1], final_step)], rest
    return [], rest


def _without_last_copies(stepped: list[_Stepped]) -> list[_Stepped]:
    """Drop Lightning's `last.ckpt` (`last-v1.ckpt`, ...) when another checkpoint has its step: it is a copy."""
    steps = {s.step for s in stepped if not LAST_COPY.match(s.candidate.path.name)}
    kept = []
    for entry in sorted(stepped, key=lambda s: s.name.removesuffix(".ckpt")):  # last.ckpt before last-v1
        if LAST_COPY.match(entry.candidate.path.name):
            if entry.step in steps:
                continue
            steps.add(entry.step)
        kept.append(entry)
    return kept


def _copy_rank(entry: _Stepped, versions: list[Path]) -> tuple[int, int]:
    """Which of several saves of one step is the newest: the later version_N folder, then Lightning's -vN."""
    number = _COPY_NUMBER.search(entry.candidate.path.name)
    version = versions.index(entry.candidate.version) if entry.candidate.version in versions else -1
    return version, int(number.group(1)) if number else 0


def _is_resave(group: list[_Stepped]) -> bool:
    """Saves of one step by a resumed run: from different version_N folders, or names that differ only in
    Lightning's -vN suffix (its answer to a file name already taken)."""
    versions = [s.candidate.version for s in group]
    if None not in versions and len(set(versions)) == len(versions):
        return True
    bases = {(s.candidate.path.parent, _COPY_NUMBER.sub("", s.candidate.path.name)) for s in group}
    return len(bases) == 1


def _one_save_per_step(ckpt_dir: Path, stepped: list[_Stepped]) -> tuple[list[_Stepped], list[str]]:
    """One checkpoint per step, with notes. A step saved twice by a resumed run is taken from the newer save;
    any other step saved twice is an error that lists the files. Lightning version_N folders are one run only
    when each version starts after the first step of the one before (a resumed job); otherwise they are
    separate runs, and an error lists them."""
    versions = list(dict.fromkeys(s.candidate.version for s in stepped if s.candidate.version))
    _check_one_run(ckpt_dir, stepped, versions)
    by_step: dict[int, list[_Stepped]] = {}
    for entry in stepped:
        by_step.setdefault(entry.step, []).append(entry)
    kept, notes, clashes = [], [], []
    for step, group in sorted(by_step.items()):
        if len(group) == 1:
            kept += group
        elif _is_resave(group):
            newest = max(group, key=lambda s: _copy_rank(s, versions))
            kept.append(newest)
            notes.append(f"step {step} is saved {len(group)} times ({', '.join(s.name for s in group)}), by a "
                         f"resumed run; the newest, {newest.name}, is used")
        else:
            clashes.append(f"step {step}: {', '.join(s.name for s in group)}")
    if clashes:
        raise CheckpointError(f"{ckpt_dir}: several checkpoints share a step ({'; '.join(clashes)}); keep one per step")
    return kept, notes


def _check_one_run(ckpt_dir: Path, stepped: list[_Stepped], versions: list[Path]) -> None:
    spans = {v: sorted(s.step for s in stepped if s.candidate.version == v) for v in versions}
    firsts = [spans[v][0] for v in versions]
    if all(later > earlier for earlier, later in zip(firsts, firsts[1:])):
        return
    listed = "; ".join(f"{v.name}: steps {spans[v][0]}-{spans[v][-1]}" for v in versions)
    raise CheckpointError(
        f"{ckpt_dir}: holds {len(versions)} separate runs ({listed}): a run resumed from a checkpoint saves steps "
        f"after the first step of the run before it; point grokmon at one run (grokmon analyze {versions[-1]})"
    )


def _few(names: list[str]) -> str:
    return ", ".join(names) if len(names) <= 3 else f"{', '.join(names[:2])}, ... ({len(names)} folders)"
