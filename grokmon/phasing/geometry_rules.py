"""Phase rules without labels: the geometry of the network around the probe points decides.

From the literature (docs/phases.md): local complexity (LC) rises while the network fits and peaks around
interpolation; moving to the general solution *simplifies* the function around the data: LC falls (region
migration), centroid alignment rises, the Jacobian's spectrum concentrates (effective rank down, top share
up), and under weight decay the norms that grew while memorising shrink. A robust plateau is all of that
slowed down; anti-grokking is alignment lost again after it was gained.

Each of four groups of series votes at every checkpoint, +1 simplifying, -1 complicating, 0 flat (a group
with two series averages them): complexity (LC), alignment (centroid alignment), rank (effective rank, top
share) and scale (centroid norm, Jacobian Frobenius norm). A vote is the direction of the series' straight
piece in log-step (phase_trends), so it is significant against the standard errors by construction.
"""

from __future__ import annotations

import math

import numpy as np

from .trends import Trend, log_steps

# group -> ((metric, simplifying direction), ...); the first split that has the metric is used.
GROUPS = {
    "complexity": (("lc", -1),),
    "alignment": (("centroid_alignment", +1),),
    "rank": (("jacobian_erank", -1), ("jacobian_pc1", +1)),
    "scale": (("centroid_norm", -1), ("jacobian_fro", -1)),
}
SPLITS = ("train", "test", "random")
# Norms change by factors (weight decay shrinks them geometrically): judged on log10 of their value.
LOG_METRICS = ("centroid_norm", "jacobian_fro")
SERIES_WORDS = {"lc": "local complexity", "centroid_alignment": "centroid alignment",
                "jacobian_erank": "effective rank", "jacobian_pc1": "Jacobian top share",
                "centroid_norm": "centroid norm", "jacobian_fro": "Jacobian norm"}


def lc_ascent(lc: Trend) -> tuple[int, int] | None:
    """(start, peak) indices of LC's first ascent (after any early descent), or None without one.

    The peak is the highest fitted LC from the first rising piece to the end of the first falling piece after
    it, so that neither an early descent nor a late rise is taken for the peak around interpolation.
    """
    rising = np.flatnonzero(lc.present & (lc.direction > 0))
    if len(rising) == 0:
        return None
    start = int(rising[0])
    falling = np.flatnonzero(lc.present & (lc.direction < 0) & (np.arange(len(lc.value)) > start))
    stop = len(lc.value)
    if len(falling):
        stop = int(np.flatnonzero(lc.piece == lc.piece[falling[0]])[-1]) + 1
    fit = np.where(lc.present[start:stop], lc.fit[start:stop], -np.inf)
    return start, start + int(np.argmax(fit))


def votes(trend) -> tuple[dict[str, np.ndarray], dict[str, Trend]]:
    """Per group, its vote at each checkpoint (NaN where it has no series); the series used, by metric."""
    series: dict[str, Trend] = {}
    out: dict[str, np.ndarray] = {}
    for group, members in GROUPS.items():
        stack = []
        for metric, simplifying in members:
            t = trend(metric, *SPLITS, log=metric in LOG_METRICS)
            if t.present.any():
                series[metric] = t
                stack.append(np.where(t.present, simplifying * t.direction, np.nan))
        if stack:
            stacked = np.vstack(stack)
            count = np.isfinite(stacked).sum(axis=0)  # no member with a value there: NaN, without a warning
            out[group] = np.where(count > 0, np.nansum(stacked, axis=0) / np.maximum(count, 1), np.nan)
    return out, series


def active_groups(series: dict[str, Trend], i: int, window: slice, fraction: float) -> float:
    """How many groups still move at checkpoint i at `fraction` or more of their fastest pace in `window`.

    A group counts 1 when all its moving series are that fast, 0.5 when half of them are.
    """
    total = 0.0
    for members in GROUPS.values():
        shares = []
        for metric, _ in members:
            t = series.get(metric)
            if t is None or not t.present[i]:
                continue
            pace = np.abs(np.where(t.present[window] & (t.direction[window] != 0), t.slope[window], 0.0))
            fastest = float(pace.max()) if len(pace) else 0.0
            shares.append(float(t.direction[i] != 0 and abs(t.slope[i]) >= fraction * fastest > 0))
        total += float(np.mean(shares)) if shares else 0.0
    return total


def shock(series: dict[str, Trend], x: np.ndarray, i: int, since: int, th) -> tuple[str, int] | None:
    """Damage seen at checkpoint i after the run's geometry had settled at index `since`: (note, index of
    the last checkpoint before it), or None.

    - dead units: the mean effective rank falls below 1, which a network whose Jacobian is non-zero at
      every probe point cannot have (its effective rank is at least 1 there), so the Jacobian vanished at
      1 - rank of the points or more;
    - local complexity jumps: it rises by `lc_jump` of its level within `jump_decades` of steps, the
      function around the data being rebuilt rather than simplified.
    """
    rank = series.get("jacobian_erank")
    if rank is not None and rank.present[i] and i > since:
        before = np.where(rank.present[since:i], rank.value[since:i], np.nan)
        floor = float(np.nanmin(before)) if np.isfinite(before).any() else math.nan
        v = float(rank.value[i])
        if v < 1.0 and floor - v >= max(th.dead_rank_drop, th.slope_sigma * float(rank.sigma[i])):
            last = since + int(np.flatnonzero(np.isfinite(before))[-1])
            where = "every probe point" if v <= 0 else f"at least {1 - v:.0%} of the probe points"
            return (f"effective rank {v:.2f} fell below 1 (from {floor:.2f}): the Jacobian vanished at {where} "
                    "(dead units)"), last
    lc = series.get("lc")
    if lc is not None and lc.present[i] and i > since:
        window = [j for j in range(since, i) if lc.present[j] and x[i] - x[j] <= th.jump_decades]
        if window:
            low = min(window, key=lambda j: lc.value[j])
            rise = float(lc.value[i] - lc.value[low])
            noise = th.slope_sigma * math.hypot(lc.sigma[i], lc.sigma[low])
            if lc.value[low] > 0 and rise >= max(noise, th.lc_jump * float(lc.value[low])):
                return (f"local complexity jumped from {lc.value[low]:.3g} to {lc.value[i]:.3g} "
                        f"(+{rise / lc.value[low]:.0%}) within {x[i] - x[low]:.2f} decades of steps: the function "
                        "around the data is being rebuilt"), low
    return None


def geometry_labels(steps: np.ndarray, trend, th):
    """Per checkpoint: phase (None without evidence), a short note, evidence strength; best index.

    `trend(metric, *splits, log=False)` gives the Trend of the first split that has the metric.
    """
    n = len(steps)
    labels: list[str | None] = [None] * n
    notes = [""] * n
    strength = np.zeros(n)
    group_votes, series = votes(trend)
    if not group_votes:
        return labels, notes, strength, None
    stack = np.vstack(list(group_votes.values()))
    groups_here = np.isfinite(stack).sum(axis=0)
    score = np.nansum(stack, axis=0)
    x = log_steps(steps)

    lc = series.get("lc")
    ascent = lc_ascent(lc) if lc is not None else None
    peak = ascent[1] if ascent else None
    if ascent:  # how far LC climbed in its first ascent: the scale of "near its peak"
        climb = slice(ascent[0], peak + 1)
        rise = lc.fit[peak] - float(np.nanmin(np.where(lc.present[climb], lc.fit[climb], np.nan)))
    al = series.get("centroid_alignment")
    al_level = al.level(th.slope_sigma) if al is not None else None

    need = th.geometry_min_votes
    generalised, gen_run, gen_start, al_base = False, 0, None, math.nan
    moved, settled_run, settled_at, memorised = False, 0, None, 0
    damage, best = None, None
    for i in range(n):
        if groups_here[i] == 0:
            continue
        s = float(score[i])
        movers = _movers(series, i, s, int(groups_here[i]))
        moving = active_groups(series, i, slice(0, n), th.settle_fraction)
        quiet = moved and moving == 0  # every group slow against its own fastest pace in the run
        moved = moved or moving > 0
        if damage is None and settled_at is not None:
            found = shock(series, x, i, settled_at, th)
            if found is not None:
                damage, best = found[0], found[1]
                damage_step = int(steps[i])
        if damage is not None:  # the state the run had settled in is lost; nothing later restores it
            labels[i], strength[i] = "collapse", 1.0
            notes[i] = damage if int(steps[i]) == damage_step else f"since step {damage_step}: {damage}"
            continue
        if not generalised:
            # simplifying counts once the fitting is over: past LC's peak, or after memorisation has lasted
            past_fitting = ((ascent and i > peak) or memorised >= th.min_phase_checkpoints
                            or (lc is None and i >= th.min_phase_checkpoints))
            if s >= need and past_fitting:
                labels[i], strength[i] = "generalisation", min(1.0, s / (2 * need))
                notes[i] = f"the geometry is simplifying: {movers}"
                gen_run += 1
                gen_start = i if gen_start is None else gen_start
                if gen_run >= th.min_phase_checkpoints:
                    generalised = True
                    settled_at = gen_start if settled_at is None else settled_at
                    if al is not None:
                        before = slice(0, gen_start + 1)
                        al_base = float(np.nanmin(np.where(al.present[before], al_level[before], np.nan)))
                continue
            gen_run, gen_start = 0, None
            if quiet:
                # A converged run and one still memorising (that may grok later) both look like this.
                labels[i], strength[i] = "memorisation", 0.0
                notes[i] = (f"the geometry has settled without simplifying (no group moves at "
                            f"{th.settle_fraction:g} of its fastest pace): converged or still memorising, which "
                            f"accuracy on labelled probes (y_train, y_test) would tell; {movers}")
                settled_run += 1
                if settled_run >= th.min_phase_checkpoints and settled_at is None:
                    settled_at = i - settled_run + 1
            elif memorised >= th.min_phase_checkpoints:
                labels[i], strength[i] = "memorisation", 0.7 if s > -need else 0.5
                notes[i] = f"the geometry moves but is not simplifying: {movers}"
                settled_run = 0
            elif ascent and (i < ascent[0] or (i < peak and lc.fit[peak] - lc.fit[i] > th.peak_band * rise)):
                labels[i], strength[i] = "fitting", 0.5 + 0.5 * (lc.direction[i] > 0)
                notes[i] = (f"local complexity {lc.value[i]:.3g}, before its peak {lc.fit[peak]:.3g} at step "
                            f"{steps[peak]}: {movers}")
            elif ascent:
                labels[i], strength[i] = "memorisation", 0.7 if s > -need else 0.5
                notes[i] = (f"local complexity {lc.value[i]:.3g} near or past its peak {lc.fit[peak]:.3g} at step "
                            f"{steps[peak]}; the geometry is not simplifying: {movers}")
            elif lc is not None and moving > 0:
                labels[i], strength[i] = "fitting", 0.5
                notes[i] = f"the geometry is still moving away from its initial state: {movers}"
            elif lc is not None:
                labels[i], strength[i] = "fitting", 0.0
                notes[i] = f"no group moves beyond its noise, so the geometry cannot tell the phase: {movers}"
            else:  # without local complexity there is no telling fitting from memorisation
                labels[i], strength[i] = "memorisation", 0.0
                notes[i] = f"no local complexity measured; the geometry is not simplifying: {movers}"
            memorised += labels[i] == "memorisation"
            continue
        # after generalisation: collapse, more generalisation, a plateau, or still changing
        lost, drop, gain, top = False, 0.0, 0.0, math.nan
        if al is not None and al.present[i]:
            since = np.where(al.present[gen_start:i + 1], al_level[gen_start:i + 1], np.nan)
            at_top = gen_start + int(np.nanargmax(since))
            top = float(al_level[at_top])
            gain, drop = top - al_base, top - al_level[i]
            noise = th.slope_sigma * math.hypot(al.sigma[i], al.sigma[at_top])
            # alignment follows accuracy only loosely (BACKGROUND): its loss does not count while another
            # group is still simplifying
            others_simplify = any(v[i] > 0 for g, v in group_votes.items() if g != "alignment")
            lost = (gain >= noise and gain >= th.min_gain * al.span and drop >= noise
                    and drop >= th.collapse_drop * gain and not others_simplify)
        still = active_groups(series, i, slice(gen_start, i + 1), th.settle_fraction)
        if lost or s <= -2 * need:
            labels[i] = "collapse"
            strength[i] = min(1.0, drop / gain) if lost else min(1.0, -s / (4 * need))
            notes[i] = (f"centroid alignment {al.value[i]:.3f}, down {drop:.3f} from its peak {top:.3f} since step "
                        f"{steps[gen_start]}, and {movers}" if lost else f"the geometry is complicating again: {movers}")
        elif still <= need * groups_here[i] / len(GROUPS):  # one group in four may still move
            labels[i] = "robustness_plateau"
            # how settled: the groups still moving at pace, then the slower significant drift (net vote)
            strength[i] = (1.0 - min(1.0, still / (2 * need))) * (1.0 - min(1.0, abs(s) / (4 * need)))
            notes[i] = (f"the geometry has settled after simplifying from step {steps[gen_start]}: {still:g} of "
                        f"{int(groups_here[i])} groups still move at {th.settle_fraction:g} of their pace since; "
                        f"{movers}")
        elif s >= need:
            labels[i], strength[i] = "generalisation", min(1.0, s / (2 * need))
            notes[i] = f"the geometry is still simplifying: {movers}"
        else:
            labels[i], strength[i] = "generalisation", 0.0
            notes[i] = f"the geometry is still changing, but not on balance simplifying: {movers}"
    # fewer kinds of evidence, less confidence: one group alone gives at most 5/8 of the strength
    strength = strength * (0.5 + 0.5 * groups_here / len(GROUPS))
    if damage is None and generalised and al is not None:
        after = np.where(al.present & (np.arange(n) >= gen_start), al.value, np.nan)
        best = int(np.nanargmax(after)) if np.isfinite(after).any() else None
    return labels, notes, strength, best


def _movers(series: dict, i: int, score: float, groups: int) -> str:
    """What moves at checkpoint i, with values, and the net vote: 'centroid norm 265 falling, ... (net +2 of 4)'."""
    words = []
    for members in GROUPS.values():
        for metric, _ in members:
            t = series.get(metric)
            if t is not None and t.present[i] and t.direction[i] != 0:
                value = 10 ** t.value[i] if metric in LOG_METRICS else t.value[i]
                words.append(f"{SERIES_WORDS[metric]} {value:.3g} {'rising' if t.direction[i] > 0 else 'falling'}")
    moving = ", ".join(words) if words else "nothing moves"
    return f"{moving} (net {score:+.1f} of {groups} group{'s' if groups != 1 else ''})"
