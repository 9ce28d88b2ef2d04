"""`mlxdraft serve --from results.json`: the verdict's chosen setup is served when it is "speculative";
the target alone, with one line saying why, when it is no-gain, inconclusive or nothing was measured.
The results files are hand-made (tests/synthetic.py) with known verdicts, their models the tiny kit's."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from synthetic import make_state

from mlxdraft.cli import cli
from mlxdraft.errors import InvalidInputError
from mlxdraft.serve import setup_from_results

STATES = {
    "speculative": dict(speedups={("big", "small", 4): 1.5, ("big", "small", 2): 1.3}),
    "no-gain": dict(speedups={("big", "small", 4): 0.7, ("big", "small", 2): 0.7}),
    "inconclusive": dict(speedups={("big", "small", 4): 1.03}, noise=0.2, prompts=4),
    "not measured": dict(speedups={}, statuses={("big", "small"): "failed"}),
}


def results_file(tmp_path, tiny, kind: str, method: str = "mlx-lm", params: dict | None = None,
                 targets=("big",)) -> str:
    state = make_state(drafts=("small",), targets=targets, **STATES[kind])
    state["models"]["big"]["path"] = str(tiny.target)
    state["models"]["small"]["path"] = str(tiny.draft)
    if method != "mlx-lm":
        state["plan"]["methods"] = [method]
        state["plan"]["method_params"] = {method: params or {}}
        for group in state["groups"].values():
            for sample in group["samples"]:
                sample["method"] = method if sample["num_draft_tokens"] else "baseline"
    path = tmp_path / f"{kind.replace(' ', '-')}-{method}.json"
    path.write_text(json.dumps(state))
    return str(path)


def test_a_speculative_verdict_serves_its_chosen_setup(tmp_path, tiny):
    setup = setup_from_results(results_file(tmp_path, tiny, "speculative"))
    assert (setup.target, setup.method, setup.draft, setup.num_draft_tokens) == (str(tiny.target), "mlx-lm",
                                                                                 str(tiny.draft), 4)
    assert setup.reason.startswith("serving the verdict's setup mlx-lm small k=4: mlx-lm small k=4 is 1.")
    lookup = setup_from_results(results_file(tmp_path, tiny, "speculative", "prompt-lookup", {"ngram_max": 3}))
    assert (lookup.method, lookup.draft, lookup.num_draft_tokens) == ("prompt-lookup", None, 4)
    assert lookup.params["ngram_max"] == 3


@pytest.mark.parametrize("kind", ["no-gain", "inconclusive", "not measured"])
def test_any_other_verdict_serves_the_target_alone_and_says_why(tmp_path, tiny, kind):
    setup = setup_from_results(results_file(tmp_path, tiny, kind))
    assert (setup.target, setup.method, setup.draft, setup.num_draft_tokens) == (str(tiny.target), "baseline",
                                                                                 None, 0)
    assert setup.reason.startswith(f"serving the target alone: the verdict is {kind} (")


def test_the_target_must_be_named_when_the_file_has_several(tmp_path, tiny):
    path = results_file(tmp_path, tiny, "speculative", targets=("big", "huge"))
    with pytest.raises(InvalidInputError, match=r"has 2 targets \(big, huge\); choose one with --target"):
        setup_from_results(path)
    assert setup_from_results(path, "big").draft == str(tiny.draft)
    assert setup_from_results(path, str(tiny.target)).method == "mlx-lm"  # its folder names it too
    result = CliRunner().invoke(cli, ["serve", "--from", path, "--target", "nope"])
    assert result.exit_code == 1
    assert result.output.strip() == f"Error: {path} has no target 'nope'; its targets: big, huge"


@pytest.mark.parametrize("kind", list(STATES))
def test_serve_from_prints_one_line_and_serves_that_setup(tmp_path, tiny, kind):
    from serving import ServerProcess, request

    process = ServerProcess(["--from", results_file(tmp_path, tiny, kind), "--port", 0], tmp_path / "home")
    try:
        status, _, models = request(process.base, "GET", "/v1/models")
        assert status == 200
        served = models["data"][0]["mlxdraft"]
        status, _, answer = request(process.base, "POST", "/v1/chat/completions",
                                    {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 3})
        assert status == 200 and answer["usage"]["completion_tokens"] == 3
    finally:
        assert process.stop() == 0
    # the one line saying what is served comes first among the lines about the setup (a slow load may add
    # progress lines of its own on a busy machine)
    setup_lines = [line for line in process.lines if line.startswith(("serving ", "Serving "))]
    first, *rest = setup_lines
    if kind == "speculative":
        assert first.startswith("serving the verdict's setup mlx-lm small k=4: ")
        assert (served["method"], served["draft"], served["k"]) == ("mlx-lm", str(tiny.draft), 4)
        assert answer["mlxdraft"]["method"] == "mlx-lm" and answer["mlxdraft"]["k"] == 4
    else:
        assert first.startswith(f"serving the target alone: the verdict is {kind} (")
        assert (served["method"], served["draft"], served["k"]) == ("baseline", None, None)
    assert rest[0].startswith("Serving ") and "Traceback" not in process.stderr


def test_a_setup_only_mlxdraft_runs_comes_with_its_serve_command():
    from mlxdraft.engines import get_engine
    from mlxdraft.methods import get_method

    engine = get_engine("mlx-lm")
    target, draft = {"path": "/m/t", "repo_id": None}, {"path": "/m/d", "repo_id": None}
    lines = engine.commands(target, draft, get_method("draft"), 4, {"temp": 0.7}, {})
    assert lines == ["mlxdraft generate /m/t --draft /m/d --method draft -k 4 --temp 0.7 --prompt 'Hello'",
                     "mlxdraft serve /m/t --draft /m/d --method draft -k 4"]
    own = engine.commands(target, draft, get_method("mlx-lm"), 4, {"temp": 0.0}, {})
    assert not any(line.startswith("mlxdraft serve") for line in own)  # mlx_lm.server runs that one
