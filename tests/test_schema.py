"""schema.py: a damaged results file is one error naming the file and the field."""

import copy
import dataclasses
import json

import pytest

from mlxdraft.errors import InvalidInputError
from mlxdraft.measure import MeasureSettings, RunSample
from mlxdraft.schema import check_results, read_results

PATH = "results/sweep.json"


def sample(k=0, prompt_index=0, **changes):
    run = RunSample(
        num_draft_tokens=k, prompt_index=prompt_index, category="code", pass_index=0, prompt_tokens=12,
        generated_tokens=8, ttft_s=0.05, prefill_tps=240.0, decode_tokens=7, decode_s=0.1, decode_tps=70.0,
        wall_s=0.15, peak_memory_gb=0.4, finish_reason="length", token_ids=[5, 6, 7, 8, 9, 10, 11, 12],
    )
    if k:
        run.draft_tokens, run.proposed_draft_tokens, run.accepted_draft_tokens = 5, 6, 5
        run.verify_rounds, run.accepted_length_counts = 3, [0, 1, 2]
    return {**dataclasses.asdict(run), **changes}


def sweep_state():
    """Built the way sweep.py builds and saves its state."""
    settings = dataclasses.asdict(MeasureSettings(max_tokens=8, warmup=0))
    model = {"name": "t", "path": "/m/t", "kind": "local", "repo_id": None, "revision": None,
             "model_type": "llama", "precision": "fp32", "weights_gb": 0.001}
    return {
        "schema_version": 1, "kind": "sweep", "created_at": "2026-01-01T00:00:00+00:00",
        "updated_at": "2026-01-01T00:00:00+00:00",
        "machine": {"chip": "x", "memory_gb": 25.3}, "versions": {"mlx": "0.32.4"},
        "memory_budget": {"gb": 25.3, "source": "total RAM"},
        "plan": {"settings": settings, "num_draft_tokens": [2, 4], "targets": ["t"], "drafts": ["d"],
                 "prompts": [{"category": "code", "text": "def f():"}, {"category": "prose", "text": "Hi"}],
                 "memory_budget_gb": 25.3},
        "models": {"t": model, "d": {**model, "name": "d", "path": "/m/d"}},
        "groups": {
            "t | d": {"target": "t", "draft": "d", "status": "done", "reason": None,
                      "samples": [sample(0), sample(2), sample(4, prompt_index=1, decode_tps=None)]},
            "t | -": {"target": "t", "draft": None, "status": "skipped", "reason": "too big", "samples": []},
        },
        "sessions": [{"started_at": "2026-01-01T00:00:00+00:00"}],
    }


def pair_result():
    state = sweep_state()
    return {
        "schema_version": 1, "kind": "pair", "created_at": "2026-01-01T00:00:00+00:00",
        "target": state["models"]["t"], "draft": state["models"]["d"], "num_draft_tokens": 4,
        "settings": state["plan"]["settings"], "prompts": state["plan"]["prompts"],
        "summary": {"speedup": {"ratio": float("nan")}},  # derived: recomputed, never checked
        "samples": [sample(0), sample(4), sample(0, prompt_index=1), sample(4, prompt_index=1)],
    }


def test_good_files_pass():
    check_results(sweep_state(), PATH)
    check_results(pair_result(), PATH)
    newer = sweep_state()
    newer["schema_version"] = 2
    newer["groups"]["t | d"]["samples"][1].update(from_draft=[True, False], e2e_tps=50.0, partial_rounds=1)
    check_results(newer, PATH)


def damaged(message):
    return f"results file {PATH} is damaged: {message}; repair that field in the file, or measure again into a new file"


def setter(*keys, value=None, delete=False):
    def change(data):
        target = data
        for key in keys[:-1]:
            target = target[key]
        if delete:
            del target[keys[-1]]
        else:
            target[keys[-1]] = value
    return change


GROUP = ("groups", "t | d")
SAMPLE3 = (*GROUP, "samples", 2)


@pytest.mark.parametrize("change, message", [
    (setter("kind", value="bench"), 'kind must be one of pair, sweep, not "bench"'),
    (setter("kind", delete=True), "kind is missing"),
    (setter("schema_version", value="1"), 'schema_version must be one of 1, 2, 3, not "1"'),
    (setter("plan", value=[]), "plan must be an object, not a list"),
    (setter("plan", "settings", "max_tokens", value=0), "plan.settings.max_tokens must be at least 1, not 0"),
    (setter("plan", "settings", "runs", value=1.5), "plan.settings.runs must be a whole number, not 1.5"),
    (setter("plan", "settings", "warmup", value=-1), "plan.settings.warmup must be at least 0, not -1"),
    (setter("plan", "settings", "temp", value=float("inf")), "plan.settings.temp is Infinity"),
    (setter("plan", "settings", "seed", value=None), "plan.settings.seed must be a whole number, not null"),
    (setter("plan", "settings", "fixed_length", value=1), "plan.settings.fixed_length must be true or false, not 1"),
    (setter("plan", "num_draft_tokens", value=[2, 0]), "plan.num_draft_tokens[1] must be at least 1, not 0"),
    (setter("plan", "targets", value=["t", 3]), "plan.targets[1] must be a string, not 3"),
    (setter("plan", "drafts", delete=True), "plan.drafts is missing"),
    (setter("plan", "prompts", 1, "text", value=None), "plan.prompts[1].text must be a string, not null"),
    (setter("groups", value=[]), "groups must be an object, not a list"),
    (setter(*GROUP, "status", value="running"),
     'groups["t | d"].status must be one of pending, done, skipped, failed, not "running"'),
    (setter(*GROUP, "draft", value=7), 'groups["t | d"].draft must be a string, not 7'),
    (setter(*GROUP, "reason", value=[]), 'groups["t | d"].reason must be a string, not a list'),
    (setter(*GROUP, "samples", value={}), 'groups["t | d"].samples must be a list, not an object'),
    (setter(*GROUP, "samples", 0, value="x"), 'groups["t | d"].samples[0] must be an object, not "x"'),
    (setter(*SAMPLE3, "decode_tps", value=float("nan")), 'groups["t | d"].samples[2].decode_tps is NaN'),
    (setter(*SAMPLE3, "wall_s", value=-0.1), 'groups["t | d"].samples[2].wall_s must be at least 0, not -0.1'),
    (setter(*SAMPLE3, "ttft_s", value=True), 'groups["t | d"].samples[2].ttft_s must be a number, not true'),
    (setter(*SAMPLE3, "generated_tokens", value=8.0),
     'groups["t | d"].samples[2].generated_tokens must be a whole number, not 8.0'),
    (setter(*SAMPLE3, "token_ids", value=[1, "2"]), 'groups["t | d"].samples[2].token_ids[1] must be a whole number, '
                                                    'not "2"'),
    (setter(*SAMPLE3, "peak_memory_gb", delete=True), 'groups["t | d"].samples[2].peak_memory_gb is missing'),
    (setter(*SAMPLE3, "accepted_length_counts", value=[0, -1]),
     'groups["t | d"].samples[2].accepted_length_counts[1] must be at least 0, not -1'),
    (setter(*SAMPLE3, "prompt_index", value=2), 'groups["t | d"].samples[2].prompt_index is 2, but the file has '
                                                'only 2 prompt(s)'),
    (setter(*SAMPLE3, "e2e_tps", value=float("-inf")), 'groups["t | d"].samples[2].e2e_tps is -Infinity'),
    (setter("models", "d", "path", value=None), 'models["d"].path must be a string, not null'),
    (setter("memory_budget", "gb", value=float("nan")), "memory_budget.gb is NaN"),
])
def test_damaged_sweeps_name_the_field(change, message):
    data = sweep_state()
    change(data)
    with pytest.raises(InvalidInputError) as excinfo:
        check_results(data, PATH)
    assert str(excinfo.value) == damaged(message)


@pytest.mark.parametrize("change, message", [
    (setter("num_draft_tokens", value=0), "num_draft_tokens must be at least 1, not 0"),
    (setter("target", value="t"), 'target must be an object, not "t"'),
    (setter("draft", "name", delete=True), "draft.name is missing"),
    (setter("settings", "temp", value="0"), 'settings.temp must be a number, not "0"'),
    (setter("samples", 3, "decode_s", value=float("nan")), "samples[3].decode_s is NaN"),
    (setter("samples", delete=True), "samples is missing"),
])
def test_damaged_pairs_name_the_field(change, message):
    data = pair_result()
    change(data)
    with pytest.raises(InvalidInputError) as excinfo:
        check_results(data, PATH)
    assert str(excinfo.value) == damaged(message)


def test_not_a_results_file_and_newer_versions():
    for data in ([1, 2], {"kind": "sweep"}, "x"):
        with pytest.raises(InvalidInputError) as excinfo:
            check_results(data, PATH)
        assert str(excinfo.value) == (f"{PATH} is not an mlxdraft results file (it has no schema_version); pass a "
                                      "file written by `mlxdraft pair -o` or `mlxdraft sweep`")
    with pytest.raises(InvalidInputError) as excinfo:
        check_results({**sweep_state(), "schema_version": 4}, PATH)
    assert str(excinfo.value) == (f"results file {PATH} has schema version 4, newer than this mlxdraft reads "
                                  "(1, 2, 3); upgrade mlxdraft")


def test_read_results_catches_nan_literals_and_broken_json(tmp_path):
    path = tmp_path / "sweep.json"
    text = json.dumps(sweep_state(), indent=1)
    path.write_text(text.replace('"decode_tps": null', '"decode_tps": NaN'))
    with pytest.raises(InvalidInputError) as excinfo:
        read_results(path)
    assert str(excinfo.value) == damaged('groups["t | d"].samples[2].decode_tps is NaN').replace(PATH, str(path))
    path.write_text(text[: len(text) // 2])  # cut off, as by a full disk before atomic writes
    with pytest.raises(InvalidInputError, match=rf"^results file {path} is damaged: it is not valid JSON \("):
        read_results(path)
    path.write_text(text)
    assert read_results(path) == json.loads(text)
    with pytest.raises(InvalidInputError, match="does not exist"):
        read_results(tmp_path / "missing.json")


def test_the_input_is_not_changed():
    data = sweep_state()
    before = copy.deepcopy(data)
    check_results(data, PATH)
    assert data == before


def test_pairs_of_schema_2_use_the_sweep_layout():
    data = {**sweep_state(), "schema_version": 2, "kind": "pair"}
    data["groups"]["t | d"].update(retry=False)
    data["groups"]["t | d"]["samples"][1].update(partial_rounds=1, round_tokens=None, from_draft=[True, False])
    check_results(data, PATH)
    data["groups"]["t | d"]["samples"][1]["from_draft"] = [1, 0]
    with pytest.raises(InvalidInputError) as excinfo:
        check_results(data, PATH)
    assert str(excinfo.value) == damaged('groups["t | d"].samples[1].from_draft[0] must be true or false, not 1')
    del data["plan"]
    with pytest.raises(InvalidInputError) as excinfo:
        check_results(data, PATH)
    assert str(excinfo.value) == damaged("plan is missing")


def schema_3_state():
    data = {**sweep_state(), "schema_version": 3}
    data["methods"] = {key: {"key": key, "label": key, "summary": "s", "needs_draft": key != "baseline",
                             "uses_k": key != "baseline", "fixed_k": True, "lossless_at_temp_0": True,
                             "defaults": {"threshold": 0.4, "calibrate": True}, "native_engine": None}
                       for key in ("baseline", "mlx-lm")}
    data["engines"] = {"mlx-lm": {"name": "mlx-lm", "label": "MLX", "capabilities": {"methods": ["baseline"]}}}
    data["commands"] = {"t | d | mlx-lm | 2": ["mlx_lm.generate --model /m/t"]}
    return data


@pytest.mark.parametrize("change, message", [
    (lambda d: d.pop("methods"), "methods is missing"),
    (lambda d: d.pop("commands"), "commands is missing"),
    (lambda d: d["methods"]["mlx-lm"].pop("needs_draft"), 'methods["mlx-lm"].needs_draft is missing'),
    (lambda d: d["methods"]["mlx-lm"].update(uses_k="yes"),
     'methods["mlx-lm"].uses_k must be true or false, not "yes"'),
    (lambda d: d["engines"]["mlx-lm"].update(capabilities=[]), 'engines["mlx-lm"].capabilities must be an object, '
                                                               "not a list"),
    (lambda d: d["commands"].update(x="mlx_lm.generate"), 'commands["x"] must be a list, not "mlx_lm.generate"'),
])
def test_schema_3_metadata_is_checked(change, message):
    check_results(schema_3_state(), PATH)
    data = schema_3_state()
    change(data)
    with pytest.raises(InvalidInputError) as excinfo:
        check_results(data, PATH)
    assert str(excinfo.value) == damaged(message)


def test_older_schemas_need_no_metadata_and_read_the_frozen_method_table():
    from mlxdraft.results import Results

    check_results({**sweep_state(), "schema_version": 2}, PATH)  # no methods, engines or commands
    results = Results.from_dict(sweep_state())
    assert sorted(results.methods) == ["baseline", "mlx-lm"] and not results.commands_recorded
    assert results.method_info("mlx-lm")["needs_draft"] and results.method_info("baseline")["by_mlx_lm"]
    assert results.engines == {"mlx-lm": {"name": "mlx-lm", "label": "mlx-lm"}}
    assert Results.from_dict(schema_3_state()).commands == {"t | d | mlx-lm | 2": ["mlx_lm.generate --model /m/t"]}
