"""The smart sweep's last step for a target: settle a verdict its races left open.

A race (module `race`) admits the smaller k after its probe, so those setups miss the probe's units. A setup
that survives its race is then judged on fewer prompts than the probe's setups, with a wider interval, and
on other prompts than its rivals; a target whose best setup is such a one gets an inconclusive verdict
where an exhaustive sweep's is decided. When a target's verdict is inconclusive after all its races, the
setups it hangs on are measured on the units they missed, in a pass of their own, each unit with a baseline
run of its own (the ratios stay paired with what was measured next to them):

Only the prompts a setup has no run of count as missed (the prompt is the unit of replication: another pass of a
prompt it has narrows nothing about prompts like these):

- the leader, the verdict's best setup, so that its interval is as narrow as an exhaustive sweep's, with
  the other late setups of its group: each was measured on the leader's prompts only, and catching up one
  at a time would crown the next (an estimate over half the prompts is the likelier to lead the more of
  them there are), a chase that costs more than measuring them together;
- else, the late setups tied with the leader that would show a gain once caught up, if their mean and spread
  stayed as measured (an exhaustive sweep would have them on every unit, and any tied setup surely faster
  than the baseline decides the verdict);
- else, while no setup measured on every unit could still beat the baseline, every setup that could (its
  own upper bound at or above 1.00x): "no gain" needs each one surely slower.

A round measures one unit these setups missed (the first in the plan's order), then the verdict is judged
again (from the per-unit estimates of module `estimates`, by the verdict rule the report applies, without the
report's analysis): settling stops as soon as the verdict is decided (on SmolLM2 one unit often does it,
where catching up all four cost four times the runs), and it ends because every round leaves fewer units
missed. Everything here is decided from the saved samples alone: an interrupted sweep resumes by judging again.
"""

from __future__ import annotations

from dataclasses import dataclass

from .estimates import SetupEstimate, judge_target, unit_of
from .results import GroupRecord, Results
from .stats import estimate_ratio, units_to_decide

Setup = tuple  # (method key, k)


@dataclass
class CatchUp:
    """What to measure next for a target: in one group, per catch-up unit (one, in practice), the setups to
    run after a baseline run."""

    group_key: str
    runs: list[tuple[tuple[int, int], list[Setup]]]  # ((prompt_index, pass_index), setups) in order
    reason: str

    @property
    def total_runs(self) -> int:
        return sum(1 + len(setups) for _, setups in self.runs)


def missed_units(record: GroupRecord, setup: Setup, passes: int) -> list[tuple[int, int]]:
    """The plan's units (pass < passes) the group's baseline was measured on and `setup` was not, neither
    there nor in a catch-up pass (the same prompt and pass, `passes` or a multiple of it later)."""
    baseline = [unit_of(s) for s in record.samples if s.is_baseline and s.pass_index < passes]
    have = {(s.prompt_index, s.pass_index % passes) for s in record.samples
            if (s.method, s.num_draft_tokens) == tuple(setup)}
    return [unit for unit in dict.fromkeys(baseline) if unit not in have]


def drop_unpaired_baselines(record: GroupRecord, passes: int) -> int:
    """Remove catch-up runs left unpaired by a sweep stopped mid-unit: a baseline run with nothing measured next
    to it, or (the order within a unit is random, module `order`) setups' runs whose unit has no baseline run yet;
    returns how many. The unit is then measured again."""
    late = [s for s in record.samples if s.pass_index >= passes]
    with_setup = {unit_of(s) for s in late if not s.is_baseline}
    with_baseline = {unit_of(s) for s in late if s.is_baseline}
    keep = [s for s in record.samples
            if s.pass_index < passes or (unit_of(s) in with_setup and unit_of(s) in with_baseline)]
    dropped = len(record.samples) - len(keep)
    record.samples[:] = keep
    return dropped


def _own_high(case: SetupEstimate, objective: str) -> float:
    estimate = case.own(objective)
    return estimate.high if estimate and estimate.high is not None else float("inf")


def next_catch_up(results: Results, target: str, objective: str) -> CatchUp | None:
    """The next catch-up round for `target`, or None when its verdict is decided or nothing it hangs on
    missed a unit. Decided from the per-unit estimates alone (`estimates.judge_target`: the verdict rule a report
    applies), with no report analysis and no predictions."""
    verdict, cases = judge_target(results, target, objective)
    # a "speculative" verdict that chose a setup other than the fastest, because the fastest (tied with it) was
    # measured on fewer prompts, is settled too: its choice hangs on the late leader
    recommends_slower = (verdict.kind == "speculative" and verdict.leader is not None
                         and verdict.chosen is not verdict.leader)
    if verdict.kind != "inconclusive" and not recommends_slower:
        return None
    passes = results.plan.settings.runs
    records = {(r.target, r.draft): (key, r) for key, r in results.groups.items() if r.status == "done"}

    # the prompt is the unit of replication: a unit counts as missed only when the setup has no run of its prompt
    # at all (another pass of a prompt it has would narrow nothing about prompts like these)
    missing = {id(c): [unit for unit in missed_units(records[(c.target, c.draft)][1], (c.method, c.num_draft_tokens),
                                                      passes) if unit[0] not in c.ratios[objective]]
               if (c.target, c.draft) in records else [] for c in cases}

    def missed(case: SetupEstimate) -> list[tuple[int, int]]:
        return missing.get(id(case), [])

    leader, estimate = verdict.leader, verdict.verdict.estimate if verdict.verdict else None
    candidates = verdict.verdict.candidates if verdict.verdict else 1
    why = ""

    def would_show_gain(case: SetupEstimate) -> bool:
        widened = estimate_ratio(list(case.ratios[objective].values()), candidates=candidates)
        total = units_to_decide(widened) if widened and widened.geomean > 1.0 else None
        gained = len({unit[0] for unit in missed(case)})  # prompts it has no run of (the ratios are per prompt)
        return total is not None and total <= widened.n + gained

    def promising() -> list[SetupEstimate]:
        return sorted((c for c in verdict.tied if missed(c) and would_show_gain(c)),
                      key=lambda c: -c.own(objective).geomean)

    if leader is not None and missed(leader):
        # with the leader, its group's other late setups: measured on the same prompts as the leader, any
        # of them may lead once all are (one at a time, each catch-up would crown the next one)
        here = [c for c in cases if (c.target, c.draft) == (leader.target, leader.draft) and missed(c)]
    elif recommends_slower:
        here = []
    elif tied_late := promising():
        here = [c for c in tied_late if (c.target, c.draft) == (tied_late[0].target, tied_late[0].draft)]
        why = "tied with the leader, and as measured so far they would show a gain on every unit"
    elif not any(_own_high(c, objective) >= 1.0 for c in cases if not missed(c)):
        could_win = [c for c in cases if missed(c) and _own_high(c, objective) >= 1.0]
        here = [c for c in could_win if (c.target, c.draft) == (could_win[0].target, could_win[0].draft)]
    else:
        here = []
    if not here:
        return None
    key, record = records[(here[0].target, here[0].draft)]
    unit = min((u for c in here for u in missed(c)), key=lambda u: (u[1], u[0]))  # the plan's order
    left = len({u for c in here for u in missed(c)})
    used = {unit_of(s) for s in record.samples}
    block = passes  # the first catch-up pass where this prompt is still free
    while (unit[0], block + unit[1]) in used:
        block += passes
    setups = [(c.method, c.num_draft_tokens) for c in here if unit in missed(c)]
    state = "open" if verdict.kind == "inconclusive" else "speculative, on a slower setup than the fastest"
    lead = (f"{leader.label} leads at {estimate.geomean:.2f}x [{estimate.low:.2f}, {estimate.high:.2f}] over "
            f"{estimate.n} unit(s)" if leader and estimate and estimate.low is not None else "no setup leads yet")
    reason = (f"the {objective} verdict is {state} ({lead}); measuring {', '.join(c.label for c in here)}"
              f"{f' ({why})' if why else ''} on prompt {unit[0] + 1} (1 of the {left} unit(s) missed after the "
              "race's probe), next to a baseline run")
    return CatchUp(key, [((unit[0], block + unit[1]), setups)], reason)
