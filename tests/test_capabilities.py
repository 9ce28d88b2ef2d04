"""What an engine declares decides what runs: a sampling setting an engine does not honour is refused before
anything loads (one Error line), and a misspelt engine is named as such, with a suggestion."""

import fake_engine
import pytest
from click.testing import CliRunner

from mlxdraft.cli import cli
from mlxdraft.engines import ENGINES, Capabilities, register_engine
from mlxdraft.errors import InvalidInputError
from mlxdraft.measure import MeasureSettings
from mlxdraft.sweep import check_sampling


class GreedyOnly(fake_engine.FakeEngine):
    name = "greedy-only"

    @property
    def capabilities(self):
        return Capabilities(methods=("baseline", "mlx-lm"), sampling=("temp", "seed"))


def test_a_sampling_setting_the_engine_ignores_is_refused():
    engine = GreedyOnly()
    check_sampling(MeasureSettings(temp=0.7), [engine])  # temperature is honoured
    check_sampling(MeasureSettings(top_p=1.0, top_k=0, min_p=0.0), [engine])  # defaults are not "in use"
    for settings, flag in ((MeasureSettings(top_p=0.9), "--top-p"), (MeasureSettings(top_k=40), "--top-k"),
                           (MeasureSettings(min_p=0.05), "--min-p")):
        with pytest.raises(InvalidInputError, match=f"the greedy-only engine does not honour {flag} "):
            check_sampling(settings, [engine])


def test_the_sweep_refuses_it_before_anything_loads(monkeypatch):
    engine = GreedyOnly()
    monkeypatch.setitem(ENGINES, engine.name, engine)
    result = CliRunner().invoke(cli, ["sweep", "--targets", "big", "--drafts", "small", "--engines", engine.name,
                                      "--top-p", "0.9", "-o", "unused.json"])
    assert result.exit_code != 0 and engine.generations == 0
    assert result.output.strip().splitlines()[-1].startswith("Error: the greedy-only engine does not honour --top-p")


@pytest.mark.parametrize("command", [["sweep", "--family", "smollm2", "--engines", "llama.cp"],
                                     ["pair", "smollm2:fp16", "smollm2:q8", "--engine", "mlx"]])
def test_a_misspelt_engine_gets_a_suggestion(command):
    result = CliRunner().invoke(cli, command)
    assert result.exit_code != 0
    assert "Error: unknown engine" in result.output and "did you mean" in result.output


def test_register_engine_is_the_one_line_an_engine_needs():
    engine = register_engine(GreedyOnly())
    try:
        assert ENGINES["greedy-only"] is engine
    finally:
        ENGINES.pop("greedy-only")
