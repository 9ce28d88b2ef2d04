"""Two ranks on localhost (mlx.launch, ring backend) on the tiny kit: the sharded target gives the
single-process tokens and distribution; `pair` and `sweep` under --hostfile write one results file
that `report` renders; a rank killed mid-sweep ends the run with one Error line and a file that
--resume completes; a model missing on one rank is refused before anything loads. First, the
pieces alone in one process (fast)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

import mlx.core as mx
import pytest

from mlxdraft.launcher import _free_port
from mlxdraft.results import load_results

HERE = Path(__file__).parent
ROOT = HERE.parent
TEMP = 0.1  # the tiny target is nearly uniform at higher temperatures: too flat for the test to see anything
SEEDS = 100
LAUNCH_TIMEOUT_S = 150

# the two-rank tests: about a minute or two on a busy 2-core machine; `make test` (CI) runs them
two_ranks_test = [pytest.mark.slow,
                  pytest.mark.skipif(not mx.distributed.is_available(), reason="this mlx has no distributed backend")]


def slow(function):
    for mark in two_ranks_test:
        function = mark(function)
    return function


# -- the pieces, in one process ----------------------------------------------------------------------------
def test_launched_is_read_from_what_mlx_launch_exports():
    from mlxdraft.distributed import backend_of, launched

    assert not launched({})
    assert not launched({"MLX_RANK": "0", "MLX_HOSTFILE": ""})  # mlx.launch -n 1: one process
    assert launched({"MLX_RANK": "1", "MLX_HOSTFILE": "/tmp/h"}) and backend_of({"MLX_HOSTFILE": "/tmp/h"}) == "ring"
    assert backend_of({"MLX_JACCL_COORDINATOR": "10.0.0.1:5000"}) == "jaccl"


def test_one_process_helpers_give_their_input_back():
    from mlxdraft import distributed

    world = distributed.World()
    assert world.is_leader and not world.distributed
    assert distributed.broadcast_bytes(b"abc", world) == b"abc"
    assert distributed.broadcast_floats([0.1, 2.5], world) == [0.1, 2.5]
    assert distributed.all_gather_json({"a": 1}, world) == [{"a": 1}]
    distributed.agree(None, "loading", world)
    with pytest.raises(ValueError, match="boom"):
        distributed.agree(ValueError("boom"), "loading", world)


def test_sharding_mode_follows_what_mlx_lm_models_have():
    from mlxdraft.distributed import sharding_mode

    assert sharding_mode({"model_type": "llama"}) == "tensor"
    assert sharding_mode({"model_type": "qwen2"}) == "tensor"
    assert sharding_mode({"model_type": "qwen3_next"}) == "pipeline"  # pipeline stages, no tensor parallelism
    assert sharding_mode({"model_type": "no-such-model"}) == "none"


def test_preflight_refuses_a_rank_without_the_memory_or_the_files(tiny):
    from mlxdraft.distributed import PreflightError, World, preflight
    from mlxdraft.errors import ModelNotFoundError

    world = World(host="mac-1")
    plan = preflight({"t": ("target", tiny.target), "d": ("draft", tiny.draft)}, 64.0, world)
    assert plan.ranks[0].problem is None and plan.ranks[0].need_gb > 0
    with pytest.raises(PreflightError, match=r"refused rank 0 \(mac-1\) before loading anything: needs ~.* GB"):
        preflight({"t": ("target", tiny.target), "d": ("draft", tiny.draft)}, 1e-6, world)
    with pytest.raises(PreflightError, match=r"refused rank 0 \(mac-1\).*gone: not here"):
        preflight({"gone": ("target", ModelNotFoundError("not here"))}, 64.0, world)


def test_launch_options_are_stripped_and_hostfiles_checked(tmp_path):
    from mlxdraft.errors import InvalidInputError
    from mlxdraft.launcher import read_hostfile, strip_launch_options

    assert strip_launch_options(["pair", "T", "--hostfile", "h.json", "--backend=ring", "-k", "2"]) == \
        ["pair", "T", "-k", "2"]
    bad = tmp_path / "hosts.json"
    bad.write_text('{"hosts": [{"ips": ["10.0.0.1"]}]}')
    with pytest.raises(InvalidInputError, match="each with \"ssh\""):
        read_hostfile(str(bad))
    with pytest.raises(InvalidInputError, match="cannot read --hostfile"):
        read_hostfile(str(tmp_path / "missing.json"))


def test_the_supervisor_names_the_rank_that_failed_first(tmp_path):
    from mlxdraft.launcher import _outcome

    saved = tmp_path / "s.json"
    saved.write_text("{}")
    argv = ["sweep", "--targets", "t", "--hostfile", "h.json", "-o", str(saved)]
    outcome = _outcome([(1, -9), (0, 130)], {}, {0: "mac-1", 1: "mac-2"}, False, str(saved), argv,
                       lambda path: 4, 30.0)
    assert outcome.exit_code == 1
    assert outcome.error.startswith("rank 1 (host mac-2) was killed (SIGKILL); the 4 run(s) measured so far are "
                                    f"saved in {saved}; continue with: mlxdraft sweep")
    assert outcome.error.endswith("--hostfile h.json -o " + str(saved) + " --resume")
    own = _outcome([(1, 1), (0, -15)], {1: "cannot load t: out of memory"}, {1: "mac-2"}, False, None, argv, None, 30)
    assert own.error == "rank 1 (host mac-2) stopped: cannot load t: out of memory; nothing was saved"
    # rank 0 already printed the Error line (an error every rank raised together): no second one
    assert _outcome([(1, 1), (0, 1)], {}, {}, False, None, argv, None, 30, leader_said=True).error is None
    assert _outcome([], {}, {}, False, None, argv, None, 30).exit_code == 0


def test_backend_needs_a_hostfile():
    from click.testing import CliRunner

    from mlxdraft.cli import cli

    result = CliRunner().invoke(cli, ["generate", "some-model", "--prompt", "hi", "--backend", "ring"])
    assert result.exit_code == 1 and result.output.startswith("Error: --backend goes with --hostfile")


def environment(**extra) -> dict:
    path = os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return {**os.environ, "PYTHONPATH": path, **extra}


def launch(*command, cwd=None, env=None, timeout=LAUNCH_TIMEOUT_S) -> subprocess.CompletedProcess:
    """Two local ranks of `command` under mlx.launch."""
    launcher = [sys.executable, "-c", "from mlx._distributed_utils.launch import main; main()", "-n", "2",
                "--backend", "ring", "--starting-port", str(_free_port(4)), "--"]
    return subprocess.run(launcher + list(command), cwd=cwd, env=env or environment(), capture_output=True, text=True,
                          timeout=timeout)


def mlxdraft(*args, cwd, env=None, timeout=LAUNCH_TIMEOUT_S) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mlxdraft", *args], cwd=cwd, env=env or environment(),
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def hostfile(tmp_path_factory):
    path = tmp_path_factory.mktemp("hosts") / "hosts.json"
    local = {"ssh": "127.0.0.1", "ips": ["127.0.0.1"]}
    path.write_text(json.dumps({"backend": "ring", "hosts": [local, local]}))
    return path


# -- the sharded target: same tokens, same distribution ----------------------------------------------
@pytest.fixture(scope="module")
def two_ranks(tiny, tmp_path_factory):
    out = tmp_path_factory.mktemp("ranks") / "ranks.json"
    done = launch(sys.executable, str(HERE / "distributed_ranks.py"), str(tiny.target.parent), str(out), str(TEMP),
                  str(SEEDS))
    assert out.exists(), done.stderr[-3000:]
    return json.loads(out.read_text())


@slow
def test_greedy_output_of_the_sharded_target_equals_one_process(two_ranks, tiny):
    from distributed_ranks import GREEDY_METHODS, GREEDY_PROMPT

    from mlxdraft.engines import get_engine
    from mlxdraft.measure import MeasureSettings
    from mlxdraft.methods import get_method

    assert two_ranks["world_size"] == 2 and two_ranks["sharding"] == "tensor"
    # The all-reduce sums the ranks' partial products in another order than one matmul: the logits
    # move by this much, far less than the smallest gap between the top two logits, so no argmax flips.
    assert two_ranks["max_logit_deviation"] < 1e-4 < two_ranks["min_argmax_margin"], two_ranks
    engine = get_engine("mlx-lm")
    target = engine.load(engine.resolve(str(tiny.target)))
    draft = engine.load(engine.resolve(str(tiny.draft)))
    for key in GREEDY_METHODS:
        method = get_method(key)
        alone = engine.generate(target, GREEDY_PROMPT, MeasureSettings(max_tokens=16), method,
                                draft=draft if method.needs_draft else None, num_draft_tokens=3)
        assert two_ranks["greedy"][key] == alone.token_ids, key
    assert len(set(map(tuple, two_ranks["greedy"].values()))) == 1  # lossless: every method, the same tokens


def exact_first_two(model, prompt, temp):
    """The target's exact distributions of the first and (marginally) the second token at `temp`."""
    from mlxdraft.engines.mlx_loops.sampling import processed_logprobs
    from mlxdraft.methods import Sampling

    sampling = Sampling(temp=temp)
    first = mx.exp(processed_logprobs(model(mx.array([prompt]))[0, -1], sampling))
    followers = mx.array([prompt + [token] for token in range(first.shape[0])])
    second = (first[:, None] * mx.exp(processed_logprobs(model(followers)[:, -1], sampling))).sum(axis=0)
    return first.tolist(), second.tolist()


def chi_square_p(counts: Counter, probs: list[float], min_expected: float = 5.0) -> float:
    from test_methods import chi_square_p_value

    return chi_square_p_value(counts, probs, min_expected)


@slow
def test_sampled_output_of_the_sharded_target_follows_the_one_process_distribution(two_ranks, tiny):
    from distributed_ranks import SAMPLED_PROMPT

    from mlxdraft.engines import get_engine

    engine = get_engine("mlx-lm")
    model = engine.load(engine.resolve(str(tiny.target))).model
    firsts = Counter(tokens[0] for tokens in two_ranks["sampled"])
    seconds = Counter(tokens[1] for tokens in two_ranks["sampled"])
    first, second = exact_first_two(model, SAMPLED_PROMPT, TEMP)
    assert min(chi_square_p(firsts, first), chi_square_p(seconds, second)) > 1e-3
    # negative control: the same samples against the distribution at another temperature must fail
    hot_first, hot_second = exact_first_two(model, SAMPLED_PROMPT, TEMP * 3)
    assert min(chi_square_p(firsts, hot_first), chi_square_p(seconds, hot_second)) < 1e-4


# -- the CLI under --hostfile ----------------------------------------------------------------------------
@slow
def test_pair_under_two_ranks_writes_one_results_file_that_report_renders(tiny, hostfile, tmp_path):
    done = mlxdraft("pair", str(tiny.target), str(tiny.draft), "--method", "draft", "-k", "2", "--max-tokens", "8",
                    "--prompt", "Hello there", "-w", "0", "--hostfile", str(hostfile), "-o", "pair.json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Distributed: 2 ranks over ring, target sharded (tensor parallel)" in done.stderr
    assert done.stdout.count("Verdict") == 1  # rank 0 alone printed the result
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pair.json"]
    results = load_results(tmp_path / "pair.json")
    setup = results.machine["distributed"]
    assert setup["world_size"] == 2 and setup["backend"] == "ring" and len(setup["ranks"]) == 2
    assert "communication_s" in results.models[str(tiny.target)]
    report = mlxdraft("report", "pair.json", cwd=tmp_path)
    assert report.returncode == 0 and "Distributed" in report.stdout and "spent communicating" in report.stdout


def rank_pid(tag: str, rank: int) -> int | None:
    """The process of `rank` among those started with MLXDRAFT_TEST_TAG=tag (mlx.launch's ranks
    inherit the supervisor's environment on localhost)."""
    for environ in Path("/proc").glob("[0-9]*/environ"):
        try:
            variables = environ.read_bytes().split(b"\0")
        except OSError:
            continue
        if f"MLXDRAFT_TEST_TAG={tag}".encode() in variables and f"MLX_RANK={rank}".encode() in variables:
            return int(environ.parent.name)
    return None


def runs_in(path: Path) -> int:
    try:
        return sum(len(g["samples"]) for g in json.loads(path.read_text())["groups"].values())
    except (OSError, ValueError, KeyError):
        return 0


@slow
@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="finds the ranks through /proc")
def test_a_rank_killed_mid_sweep_ends_with_one_error_and_resume_completes(tiny, hostfile, tmp_path):
    tag = uuid.uuid4().hex
    args = ["sweep", "--targets", str(tiny.target), "--drafts", str(tiny.draft), "--methods", "draft", "-k", "1,2",
            "--strategy", "exhaustive", "--max-tokens", "8", "-r", "2", "-w", "0", "--prompt", "Hello there",
            "--hostfile", str(hostfile), "-o", "sweep.json"]
    sweep = subprocess.Popen([sys.executable, "-m", "mlxdraft", *args], cwd=tmp_path, env=environment(
        MLXDRAFT_TEST_TAG=tag), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    output = tmp_path / "sweep.json"
    deadline = time.monotonic() + LAUNCH_TIMEOUT_S
    while runs_in(output) < 2 and sweep.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    victim = rank_pid(tag, 1)
    assert victim is not None and sweep.poll() is None, "the sweep ended before a rank could be killed"
    os.kill(victim, signal.SIGKILL)
    killed_at = time.monotonic()
    _, stderr = sweep.communicate(timeout=LAUNCH_TIMEOUT_S)
    assert time.monotonic() - killed_at < 30 + 10  # the supervisor's stop timeout, and some slack
    assert sweep.returncode == 1
    errors = [line for line in stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, stderr[-3000:]
    assert "rank 1 (host " in errors[0] and "was killed (SIGKILL)" in errors[0]
    assert "--hostfile" in errors[0] and errors[0].endswith("--resume")
    saved = runs_in(output)
    assert 2 <= saved < 6 and load_results(output).groups  # a valid file with what was measured
    resumed = mlxdraft(*args, "--resume", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert runs_in(output) == 6  # 2 passes x (baseline, k=1, k=2)
    report = mlxdraft("report", "sweep.json", cwd=tmp_path)
    assert report.returncode == 0 and "Distributed: 2 ranks over ring" in report.stdout


@slow
def test_a_model_missing_on_one_rank_is_refused_before_anything_loads(tiny, tmp_path):
    """Each rank works in its own folder (as on two Macs), where models/ holds both models on rank 0
    and only the draft on rank 1: the same relative path names a folder rank 1 lacks."""
    for rank in (0, 1):
        (tmp_path / f"rank{rank}" / "models").mkdir(parents=True)
        (tmp_path / f"rank{rank}" / "models" / "tiny-draft").symlink_to(tiny.draft)
    (tmp_path / "rank0" / "models" / "tiny-target").symlink_to(tiny.target)
    script = tmp_path / "in-my-folder"
    script.write_text(f'#!/bin/sh\ncd "{tmp_path}/rank$MLX_RANK" && exec "{sys.executable}" -m mlxdraft "$@"\n')
    script.chmod(0o755)
    done = launch(str(script), "pair", "models/tiny-target", "models/tiny-draft", "--method", "draft",
                  "--max-tokens", "4", "--prompt", "Hi", "-w", "0")
    errors = [line for line in done.stderr.splitlines() if line.startswith("Error:")]
    assert errors == [errors[0]] and errors[0].startswith("Error: preflight refused rank 1 ("), done.stderr[-3000:]
    assert "models/tiny-target" in errors[0]
    assert "loading target" not in done.stderr and "[group" not in done.stderr  # before any model loaded
