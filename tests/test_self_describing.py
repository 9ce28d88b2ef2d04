"""Self-describing results (schema 3): a file records its methods' and engines' metadata and the commands of
every measured setup when it is measured, so that it renders where neither is installed. A method and an engine
defined here, registered with one line each, run through `pair`, `sweep` and `report`; their files then render in
a fresh process that never heard of them. Files of schemas 1, 2 and 3 all render, and a schema-2 file resumes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import fake_engine
import pytest
from click.testing import CliRunner
from synthetic import make_state

from mlxdraft.cli import cli
from mlxdraft.engines import ENGINES, Capabilities, register_engine
from mlxdraft.methods import METHODS, Method, register
from mlxdraft.results import load_results

DATA = Path(__file__).parent / "data"
ROOT = Path(__file__).resolve().parent.parent
FORMATS = ("table", "markdown", "html", "csv", "json")

# A method only the engine below runs (its own speculation), and that engine: defined here, nowhere else.
LOOKAHEAD = Method(key="plugin-lookahead", label="plugin lookahead", summary="the plugin engine's own drafting "
                   "(a test method)", needs_draft=True, uses_k=True, native_engine="plugin")


class PluginEngine(fake_engine.FakeEngine):
    """The fake engine under another name, running the baseline and its own method only."""

    name = "plugin"
    label = "Plugin engine"

    @property
    def capabilities(self):
        return Capabilities(methods=("baseline", LOOKAHEAD.key), forward_timing=True, memory_estimate=True,
                            peak_memory=True)

    def commands(self, target, draft, method, num_draft_tokens, settings, params=None) -> list[str]:
        return [f"plugin-run --model {target['path']} --draft {draft['path'] if draft else '-'} "
                f"--method {method.key} -k {num_draft_tokens} --temp {settings['temp']}"]


@pytest.fixture
def plugin():
    register(LOOKAHEAD)  # the one line a method needs ...
    register_engine(PluginEngine())  # ... and the one an engine needs
    yield
    METHODS.pop(LOOKAHEAD.key, None)
    ENGINES.pop(PluginEngine.name, None)


def run(*args):
    result = CliRunner().invoke(cli, [str(arg) for arg in args])
    assert result.exit_code == 0, result.output
    return result


def prompts_file(tmp_path: Path) -> Path:
    path = tmp_path / "prompts.txt"
    path.write_text("".join(f"prompt {' '.join(['word'] * i)} number {i}\n" for i in range(1, 11)))
    return path


def fresh_report(path: Path, fmt: str) -> str:
    """`mlxdraft report` in a new interpreter, where only the built-in methods and engines exist."""
    done = subprocess.run([sys.executable, "-m", "mlxdraft", "report", str(path), "--format", fmt],
                          capture_output=True, text=True, timeout=300, cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr
    return done.stdout


def plugin_sweep(tmp_path: Path, name: str = "sweep.json", *extra) -> Path:
    out = tmp_path / name
    run("sweep", "--engine", "plugin", "--targets", "big", "--drafts", "small,tiny", "--methods", LOOKAHEAD.key,
        "-k", "2,4", "--max-tokens", "16", "-w", "0", "--prompts", prompts_file(tmp_path), "-o", out, *extra)
    return out


def test_a_plugin_method_and_engine_run_through_pair_sweep_and_report_and_render_where_absent(plugin, tmp_path):
    pair = tmp_path / "pair.json"
    shown = run("pair", "big", "small", "--engine", "plugin", "--method", LOOKAHEAD.key, "-k", "3", "-r", "2",
                "--max-tokens", "16", "-w", "0", "--prompt", "Hello there", "-o", pair).stdout
    assert "the plugin engine's own drafting (a test method)" in shown
    saved = json.loads(pair.read_text())
    assert saved["schema_version"] == 3
    assert saved["methods"][LOOKAHEAD.key] == LOOKAHEAD.describe() and set(saved["methods"]) == {"baseline",
                                                                                                 LOOKAHEAD.key}
    assert saved["engines"] == {"plugin": PluginEngine().describe()}
    assert saved["commands"] == {f"big | small | {LOOKAHEAD.key} | 3": [
        f"plugin-run --model /fake/big --draft /fake/small --method {LOOKAHEAD.key} -k 3 --temp 0.0"]}

    sweep = plugin_sweep(tmp_path)
    results = load_results(sweep)
    assert sorted(results.groups) == ["big | small", "big | tiny"]
    assert {key.rsplit(" | ", 2)[0] for key in results.commands} == {"big | small", "big | tiny"}
    assert len(results.commands) == 4  # two drafts, k = 2 and 4
    in_process = {fmt: run("report", sweep, "--format", fmt).stdout for fmt in FORMATS}

    for path in (pair, sweep):
        for fmt in FORMATS:
            text = fresh_report(path, fmt)
            assert LOOKAHEAD.key in text, (path.name, fmt)
            if path == sweep:
                assert text == in_process[fmt], fmt  # the same report, whatever is installed
    verdicts = json.loads(fresh_report(sweep, "json"))["verdicts"]
    [verdict] = verdicts
    if verdict["verdict"] == "speculative":
        assert verdict["commands"][0].startswith("plugin-run --model /fake/big")
    code = ("import sys; from mlxdraft.reports import render_pair; from mlxdraft.results import load_results; "
            "print(render_pair(load_results(sys.argv[1]), 'e2e', 'workload'))")
    done = subprocess.run([sys.executable, "-c", code, str(pair)], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, check=True)
    assert done.stdout == shown  # what `pair` printed, with the method's summary read from the file



def test_a_schema_3_file_of_a_missing_plugin_renders_here():
    """tests/data/sweep-v3-plugin.json was made with the plugin method and engine above (a smart sweep); neither
    is registered here."""
    assert LOOKAHEAD.key not in METHODS and "plugin" not in ENGINES
    path = DATA / "sweep-v3-plugin.json"
    for fmt in FORMATS:
        result = CliRunner().invoke(cli, ["report", str(path), "--format", fmt])
        assert result.exit_code == 0, result.output
        assert LOOKAHEAD.key in result.stdout
    [verdict] = json.loads(CliRunner().invoke(cli, ["report", str(path), "--format", "json"]).stdout)["verdicts"]
    assert verdict["verdict"] == "speculative" and verdict["method"] == LOOKAHEAD.key
    assert verdict["commands"] == [f"plugin-run --model /fake/big --draft /fake/{verdict['draft']} --method "
                                   f"{LOOKAHEAD.key} -k {verdict['num_draft_tokens']} --temp 0.0"]
    assert "commands_note" not in verdict


@pytest.mark.parametrize("name", ["pair-v1.json", "sweep-v1.json", "sweep-v2.json", "sweep-v3-plugin.json"])
@pytest.mark.parametrize("fmt", FORMATS)
def test_every_schema_renders(name, fmt):
    result = CliRunner().invoke(cli, ["report", str(DATA / name), "--format", fmt])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip()


def test_an_old_file_gets_its_commands_from_its_engine_when_installed_else_says_they_were_not_recorded(tmp_path):
    path = DATA / "sweep-v2.json"
    [verdict] = json.loads(run("report", path, "--format", "json").stdout)["verdicts"]
    assert verdict["verdict"] == "speculative"
    assert verdict["commands"][0].startswith("mlx_lm.generate --model /models/big --draft-model /models/small")
    data = json.loads(path.read_text())
    data["plan"]["engine"] = "gone"
    gone = tmp_path / "gone.json"
    gone.write_text(json.dumps(data))
    [verdict] = json.loads(run("report", gone, "--format", "json").stdout)["verdicts"]
    note = ("the commands that run it were not recorded in this results file (schema 2) and its engine, gone, "
            "is not installed here to write them")
    assert verdict["commands"] == [] and verdict["commands_note"] == note
    for fmt in ("table", "markdown", "html"):
        assert note in run("report", gone, "--format", fmt).stdout, fmt


def test_old_files_describe_their_methods_by_the_frozen_table_not_by_what_is_installed(plugin):
    results = load_results(DATA / "sweep-v2.json")
    assert results.read_version == 2 and not results.commands_recorded
    assert results.method_info("mlx-lm")["summary"] == ("mlx-lm's own speculative loop: a draft model proposes k "
                                                        "tokens per round")
    assert results.method_info("baseline")["by_mlx_lm"] is True
    assert results.method_info(LOOKAHEAD.key)["summary"] == "not described in this results file"


def test_a_schema_2_file_resumes_into_schema_3(tmp_path):
    fake_engine.install()
    out = tmp_path / "sweep.json"
    args = ["sweep", "--engine", "fake", "--targets", "big", "--drafts", "small,tiny", "-k", "2,4",
            "--max-tokens", "16", "-w", "0", "--prompts", prompts_file(tmp_path), "-o", out]
    run(*args)
    data = json.loads(out.read_text())
    for key in ("methods", "engines", "commands"):
        del data[key]
    data["schema_version"] = 2
    data["groups"]["big | tiny"].update(status="pending", samples=data["groups"]["big | tiny"]["samples"][:5])
    out.write_text(json.dumps(data))
    result = run(*args, "--resume")
    assert "Resuming" in result.output or "resum" in result.output.lower()
    saved = json.loads(out.read_text())
    assert saved["schema_version"] == 3 and saved["groups"]["big | tiny"]["status"] == "done"
    assert set(saved["methods"]) == {"baseline", "mlx-lm"} and set(saved["engines"]) == {"fake"}
    # the group measured before the resume has its commands too, written by the engine that measured it
    assert {key.rsplit(" | ", 2)[0] for key in saved["commands"]} == {"big | small", "big | tiny"}
    assert load_results(out).commands_recorded


def make_fixtures() -> None:  # pragma: no cover - run by hand: python tests/test_self_describing.py
    """Write tests/data/sweep-v2.json (a hand-made sweep as schema 2 saved it) and sweep-v3-plugin.json (a smart
    sweep by the plugin engine and method above)."""
    import tempfile

    state = make_state({("big", "small", 4): 1.5}, drafts=("small",), prompts=8, noise=0.03)
    for key in ("methods", "engines", "commands"):
        del state[key]
    state["schema_version"] = 2
    (DATA / "sweep-v2.json").write_text(json.dumps(state) + "\n")
    register(LOOKAHEAD)
    register_engine(PluginEngine(noise=0.02))
    with tempfile.TemporaryDirectory() as folder:
        path = plugin_sweep(Path(folder), "plugin.json", "--strategy", "smart")
        data = json.loads(path.read_text())
        data["command"] = None  # it named a temporary folder
        (DATA / "sweep-v3-plugin.json").write_text(json.dumps(data) + "\n")


if __name__ == "__main__":
    make_fixtures()


def test_rendering_a_schema_3_file_loads_neither_methods_nor_engines(tmp_path):
    """`mlxdraft report` of a file that describes itself reads the file alone: in a fresh process, no module of
    `methods` or `engines` (nor mlx-lm) is loaded by the time every format is written."""
    code = ("import sys\nfrom mlxdraft.cli import main\nsource, output = sys.argv[1:]\n"
            "for fmt in ('table', 'markdown', 'html', 'csv', 'json'):\n"
            "    sys.argv = ['mlxdraft', 'report', source, '--format', fmt, '-o', output + '.' + fmt]\n"
            "    try:\n        main()\n    except SystemExit as exit:\n        assert not exit.code, exit.code\n"
            "print(sorted(m for m in sys.modules if m.startswith(('mlxdraft.methods', 'mlxdraft.engines', 'mlx_lm'))))")
    done = subprocess.run([sys.executable, "-c", code, str(DATA / "sweep-v3-plugin.json"), str(tmp_path / "r")],
                          capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
    assert all((tmp_path / f"r.{fmt}").stat().st_size for fmt in FORMATS)
