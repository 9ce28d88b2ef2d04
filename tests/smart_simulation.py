"""Simulated sweeps through the real sweep, race, settle and verdict code (both strategies), on a synthetic engine
with what real sweeps have: prompts that accept differently (by category, and each its own way), run noise with
heavy tails, stalls, a cold first run in each unit, drift, and a loop that costs more per drafted token than the
timed forward passes show (the speedup model's blind spot). Seeded; used by tests/test_smart_simulations.py.

The truth of a setup (for prompts like these, the "workload" estimand) is the geometric mean of its noise-free
per-prompt speedups over a large population of prompts drawn as the sweeps' are."""

from __future__ import annotations

import contextlib
import math
import random
from dataclasses import dataclass, field, replace
from functools import cache

from fake_engine import FakeEngine, FakeModel

from mlxdraft.analysis import analyse_sweep
from mlxdraft.measure import MeasureSettings, Trace, VerifyRound, sample_from_trace
from mlxdraft.memory import MemoryBudget
from mlxdraft.methods import get_method
from mlxdraft.prompts import Prompt
from mlxdraft.sweep import ModelChoice, SweepPlan, SweepRun

CATEGORIES = {"code": 1.2, "json": 1.05, "chat": 0.65}  # acceptance factor by category (the suite is sorted)
KS = [1, 2, 3, 4, 6]
MAX_TOKENS = 48
METRIC = {"e2e": "e2e_tps", "decode": "decode_tps"}


@dataclass(frozen=True)
class World:
    """A target with two drafts, and how runs go wrong."""

    name: str
    acceptance: tuple = (0.75, 0.6)  # the drafts' base acceptance (per drafted token)
    draft_cost: tuple = (0.08, 0.03)  # the drafts' time per token, as a share of the target's
    spread: float = 0.35  # sd of a prompt's log acceptance factor around its category's
    noise: float = 0.05  # run noise: sd of log time (gauss), or the scale of a t with 3 df
    tails: str = "gauss"
    stall_rate: float = 0.0  # chance that a run's decode takes 2-3x as long
    first_run: float = 0.0  # the first run of each unit (a new prompt) is this much slower
    drift: float = 0.0  # slower by this share per 1,000 generations
    miss: float = 0.0  # per drafted token, the loop costs this share of a target pass more than timed
    scale: float = 1.0  # every speculative round costs this much more (sets the best setup's truth)
    passes: int = 1
    prompts: int = 12


@dataclass
class SimEngine(FakeEngine):
    world: World = field(default_factory=lambda: World("plain"))
    seed: int = 0

    def __post_init__(self):
        target = FakeModel(token_s=0.02, weights_gb=4.0, verify_growth=0.06, prefill_token_s=0.01)
        drafts = {f"d{i}": FakeModel(token_s=0.02 * cost, weights_gb=0.5 + i, acceptance=acceptance)
                  for i, (acceptance, cost) in enumerate(zip(self.world.acceptance, self.world.draft_cost))}
        FakeEngine.__init__(self, models={"big": target, **drafts}, noise=0.0, seed=self.seed)
        self.categories: dict = {}
        self.last_prompt = None

    def encode(self, source, prompt) -> list[int]:
        ids = FakeEngine.encode(self, source, prompt)
        self.categories[tuple(ids)] = prompt.category
        return ids

    def _slow(self, prompt_ids) -> tuple[float, float]:
        """(factor on every round, extra factor on the decode rounds) of one run."""
        w = self.world
        if w.tails == "t3":
            noise = w.noise * self.rng.gauss(0, 1) / math.sqrt(self.rng.gammavariate(1.5, 2.0) / 3)
        else:
            noise = self.rng.gauss(0, w.noise) if w.noise else 0.0
        first = tuple(prompt_ids) != self.last_prompt
        self.last_prompt = tuple(prompt_ids)
        slow = math.exp(noise) * (1 + w.drift * self.generations / 1000) * (1 + w.first_run * first)
        stall = self.rng.uniform(2, 3) if w.stall_rate and self.rng.random() < w.stall_rate else 1.0
        return slow, stall

    def time_forward(self, loaded, context_ids, widths, repeats=5) -> dict[int, list[float]]:
        spec = loaded.model  # timed as a real machine times: 2% noise, no loop overheads, no `miss`
        return {n: [spec.token_s * (1 + spec.verify_growth * (n - 1)) * self.rng.lognormvariate(0, 0.02)
                    for _ in range(repeats)] for n in widths}

    def acceptance(self, draft: FakeModel, prompt_ids) -> float:
        z = random.Random(f"prompt|{tuple(prompt_ids)}").gauss(0, 1)
        factor = CATEGORIES.get(self.categories.get(tuple(prompt_ids)), 1.0)
        return min(0.95, max(0.05, draft.acceptance * factor * math.exp(self.world.spread * z)))

    def generate(self, target, prompt_ids, settings, method, draft=None, num_draft_tokens=0, max_tokens=None,
                 params=None, on_round=None) -> Trace:
        self.generations += 1
        t, d, w = target.model, draft.model if draft is not None else None, self.world
        measured = max_tokens is None
        max_tokens = max_tokens or settings.max_tokens
        slow, stall = self._slow(prompt_ids) if measured else (1.0, 1.0)
        tokens = [(sum(prompt_ids) * 31 + 7 * i) % 997 + 3 for i in range(max_tokens)]
        accept = random.Random(f"{prompt_ids}|{method.key}|{num_draft_tokens}|{settings.seed}")
        chance = self.acceptance(d, prompt_ids) if d is not None else 0.0
        clock = len(prompt_ids) * t.prefill_token_s * slow
        sizes, ends, rounds = [], [], []
        emitted = 0
        while emitted < max_tokens:
            factor = slow * (stall if emitted else 1.0)
            if not method.uses_k:
                size, clock = 1, clock + t.token_s * factor
            else:
                proposed = min(num_draft_tokens, max_tokens - emitted)
                accepted = 0
                while accepted < proposed and accept.random() < chance:
                    accepted += 1
                size = min(accepted + 1, max_tokens - emitted)
                cost = proposed * (d.token_s + w.miss * t.token_s) + t.token_s * (1 + t.verify_growth * proposed)
                clock += cost * w.scale * factor
                rounds.append(VerifyRound(proposed, min(accepted, size),
                                          complete=proposed == num_draft_tokens and size == accepted + 1))
            emitted += size
            sizes.append(size)
            ends.append(clock)
        return Trace(tokens, sizes, ends, rounds, 1.0, "length")


def prompts_of(seed: int, count: int) -> list[Prompt]:
    """`count` prompts in the built-in suite's way: sorted by category, a third of each."""
    rng = random.Random(f"prompts|{seed}")
    names = list(CATEGORIES)
    return [Prompt(f"{names[i * len(names) // count]} task {rng.randrange(10 ** 9)} " + "word " * rng.randrange(4, 40),
                   names[i * len(names) // count]) for i in range(count)]


def plan_of(world: World, strategy: str, objective: str, seed: int) -> SweepPlan:
    settings = MeasureSettings(max_tokens=MAX_TOKENS, runs=world.passes, warmup=0, seed=seed)
    return SweepPlan(targets=[ModelChoice("big")], drafts=[ModelChoice("d0"), ModelChoice("d1")],
                     num_draft_tokens=KS, settings=settings, prompts=prompts_of(seed, world.prompts),
                     budget=MemoryBudget(64.0, "sim"), strategy=strategy, objective=objective)


@contextlib.contextmanager
def quick():
    """Faster, same decisions in kind: 200 timing resamples per speedup model instead of 1,000, and no predictions
    for the reports (the verdict never reads them): none fitted when a group is measured, nor when reading."""
    from mlxdraft import analysis, prediction, sweep

    defaults, predict = dict(prediction.fit_model.__kwdefaults__), analysis._predict
    fit = sweep.fit_group_predictions
    prediction.fit_model.__kwdefaults__["bootstrap_repeats"] = 200
    analysis._predict = lambda *args, **kwargs: None
    sweep.fit_group_predictions = lambda *args, **kwargs: {}
    try:
        yield
    finally:
        prediction.fit_model.__kwdefaults__.update(defaults)
        analysis._predict = predict
        sweep.fit_group_predictions = fit


def run_sweep(world: World, strategy: str, objective: str, seed: int, engine=None):
    """The results of one simulated sweep (on `engine`, a ReplayEngine say, instead of a fresh SimEngine)."""
    engine = engine or SimEngine(world=world, seed=seed)
    run = SweepRun(plan_of(world, strategy, objective, seed), engine=engine)
    with quick():
        for _ in run.events():
            pass
    return run.results


def replayed(world: World, objective: str, seed: int, recorded):
    """The smart strategy run on an exhaustive sweep's own samples (one pass)."""
    from mlxdraft.engines.replay import ReplayEngine

    plan = plan_of(world, "smart", objective, seed)
    return run_sweep(world, "smart", objective, seed, ReplayEngine(recorded, plan.prompts, SimEngine(world=world)))


@cache
def truths(world: World, objective: str, population: int = 240) -> dict:
    """{(draft, k): true speedup} for prompts like the sweeps': noise-free runs over a population of prompts."""
    calm = replace(world, noise=0.0, stall_rate=0.0, first_run=0.0, drift=0.0)
    engine = SimEngine(world=calm)
    settings = MeasureSettings(max_tokens=MAX_TOKENS, warmup=0)
    target = engine.load(engine.resolve("big"))
    logs: dict = {}
    for prompt in [p for seed in range(population // 12) for p in prompts_of(10_000 + seed, 12)]:
        ids = engine.encode(None, prompt)
        base = getattr(sample_from_trace(engine.generate(target, ids, settings, get_method("baseline")),
                                         "baseline", 0, len(ids)), METRIC[objective])
        for name in ("d0", "d1"):
            draft = engine.load(engine.resolve(name))
            for k in KS:
                trace = engine.generate(target, ids, settings, get_method("mlx-lm"), draft, k)
                spec = getattr(sample_from_trace(trace, "mlx-lm", k, len(ids)), METRIC[objective])
                logs.setdefault((name, k), []).append(math.log(spec / base))
    return {key: math.exp(sum(values) / len(values)) for key, values in logs.items()}


def scaled_to(world: World, objective: str, best: float) -> World:
    """`world` with every speculative round slowed (or sped up) so that its best setup's truth is `best`."""
    scale = 1.0
    for _ in range(4):  # the decode speedup scales exactly; end to end nearly
        current = max(truths(replace(world, scale=scale), objective).values())
        scale *= current / best
    return replace(world, scale=scale)


@dataclass
class Tally:
    sweeps: int = 0
    speculative: int = 0
    no_gain: int = 0
    covered: int = 0
    runs: int = 0

    def line(self) -> str:
        n = max(self.sweeps, 1)
        return (f"{self.sweeps} sweeps: speculative {self.speculative / n:.1%}, no-gain {self.no_gain / n:.1%}, "
                f"coverage {self.covered / n:.1%}, {self.runs / n:.0f} runs a sweep")


def judge(results, objective: str, truth: dict):
    """(verdict kind, whether its interval covers its setup's truth, runs measured)."""
    verdict = analyse_sweep(results, objective).verdict("big", objective, _with_other=False)
    case = verdict.chosen or verdict.leader
    estimate = verdict.verdict.estimate
    covered = estimate.low is not None and estimate.low <= truth[case.draft, case.num_draft_tokens] <= estimate.high
    runs = sum(len(g.samples) for g in results.groups.values())
    return verdict.kind, covered, runs


def simulate(world: World, strategy: str, objective: str, sweeps: int, seed: int) -> Tally:
    truth = truths(world, objective)
    tally = Tally()
    for index in range(sweeps):
        kind, covered, runs = judge(run_sweep(world, strategy, objective, seed * 100_000 + index), objective, truth)
        tally.sweeps += 1
        tally.speculative += kind == "speculative"
        tally.no_gain += kind == "no-gain"
        tally.covered += covered
        tally.runs += runs
    return tally


WORLDS = {
    "spread": World("spread"),
    "rough": World("rough", tails="t3", noise=0.03, stall_rate=0.02, first_run=0.03, drift=0.5),
    "passes": World("passes", tails="t3", noise=0.03, stall_rate=0.02, first_run=0.03, drift=0.5, passes=2),
    "cost-miss": World("cost-miss", miss=0.3),  # the loop costs 30% of a target pass more per drafted token
}


def null_world(name: str, objective: str, best: float = 1.0) -> World:
    """The named world with its best setup's truth at `best` (1.00x: no setup gains)."""
    return scaled_to(WORLDS[name], objective, best)


@dataclass
class Paired:
    """Both strategies on the same samples: the exhaustive sweep, and the smart one replayed on its runs."""

    exhaustive: Tally = field(default_factory=Tally)
    smart: Tally = field(default_factory=Tally)
    opposite: int = 0  # one says speculative where the other says no-gain
    bolder: int = 0  # the smart sweep says speculative where the exhaustive one is inconclusive

    def line(self) -> str:
        return (f"exhaustive {self.exhaustive.line()}; smart {self.smart.line()}; opposite {self.opposite}; "
                f"smart speculative where exhaustive inconclusive {self.bolder}")


def simulate_paired(world: World, objective: str, sweeps: int, seed: int) -> Paired:
    truth = truths(world, objective)
    paired = Paired()
    for index in range(sweeps):
        sweep_seed = seed * 100_000 + index
        recorded = run_sweep(world, "exhaustive", objective, sweep_seed)
        kinds = []
        for tally, results in ((paired.exhaustive, recorded), (paired.smart, replayed(world, objective, sweep_seed,
                                                                                       recorded))):
            kind, covered, runs = judge(results, objective, truth)
            tally.sweeps += 1
            tally.speculative += kind == "speculative"
            tally.no_gain += kind == "no-gain"
            tally.covered += covered
            tally.runs += runs
            kinds.append(kind)
        paired.opposite += set(kinds) == {"speculative", "no-gain"}
        paired.bolder += kinds == ["inconclusive", "speculative"]
    return paired


def figures(sweeps: int, seed: int = 7) -> None:
    """Print every scenario's figures for both strategies and objectives (the README's; about 15 minutes at 200)."""
    import time

    for name, best in (("spread", 1.0), ("rough", 1.0), ("cost-miss", 1.0), ("cost-miss", 1.1), ("passes", 1.0)):
        for objective in ("e2e", "decode"):
            started = time.time()
            world = null_world(name, objective, best)
            top = max(truths(world, objective).values())
            if world.passes == 1:
                line = simulate_paired(world, objective, sweeps, seed).line()
            else:  # several passes cannot be replayed: each strategy measures its own sweeps
                line = (f"exhaustive {simulate(world, 'exhaustive', objective, sweeps, seed).line()}; "
                        f"smart {simulate(world, 'smart', objective, sweeps, seed).line()}")
            print(f"{name} {objective} (best {top:.3f}x): {line} [{time.time() - started:.0f} s]", flush=True)


if __name__ == "__main__":  # PYTHONPATH=.:tests python tests/smart_simulation.py [sweeps]
    import sys

    figures(int(sys.argv[1]) if len(sys.argv) > 1 else 200)
