import pytest
from click.testing import CliRunner

from mlxdraft.catalog import family_entries, find_entry, load_catalog, load_list_file
from mlxdraft.cli import cli
from mlxdraft.errors import InvalidInputError, ModelNotFoundError


def test_families_and_roles():
    families = load_catalog()
    assert {"qwen2.5", "qwen2.5-coder", "llama3", "smollm2"} <= set(families)
    qwen = {e.name: e for e in families["qwen2.5"]}
    assert qwen["qwen2.5:0.5b-4bit"].role == "draft"
    assert qwen["qwen2.5:72b-4bit"].role == "target"
    assert qwen["qwen2.5:7b-4bit"].can_draft and qwen["qwen2.5:7b-4bit"].can_target
    llama = {e.name: e for e in families["llama3"]}
    assert llama["llama3:3.1-8b-4bit"].size_label == "8b"
    assert all(e.repo.startswith("mlx-community/") for f in ("qwen2.5", "qwen2.5-coder", "llama3")
               for e in families[f])
    assert all(e.can_target and e.can_draft for e in families["smollm2"])


def test_every_listed_repo_is_in_the_verified_catalog():
    import pathlib

    catalog = pathlib.Path(__file__).parents[2] / "shared" / "data" / "hub-catalog.md"
    if not catalog.exists():
        pytest.skip("the shared Hub catalog is not beside this checkout")
    text = catalog.read_text()
    for family in ("qwen2.5", "qwen2.5-coder", "llama3"):
        for entry in family_entries(family):
            assert f"| {entry.repo.split('/', 1)[1]} |" in text, entry.repo


def test_unknown_names():
    with pytest.raises(ModelNotFoundError, match="no model 'qwen2.5:9b-4bit' in the qwen2.5 list; choose one of: "):
        find_entry("qwen2.5:9b-4bit")
    with pytest.raises(InvalidInputError, match="unknown family 'mistral'; known families: "):
        family_entries("mistral")


def test_user_list_file(tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text('family = "mine"\n\n[[models]]\nname = "mine:x"\nrepo = "me/x"\nparams_b = 1\n'
                    'precision = "4bit"\nrole = "draft"\nsize_gb = 0.5\n')
    (entry,) = family_entries(str(path))
    assert (entry.name, entry.bits, entry.can_target) == ("mine:x", 4, False)
    path.write_text('family = "mine"\n\n[[models]]\nname = "mine:x"\nrepo = "me/x"\nprecision = "4bit"\n'
                    'size_gb = 1\n')
    with pytest.raises(InvalidInputError, match=r"model 1: missing key 'params_b'"):
        load_list_file(path)


def test_models_command_json_and_fit():
    result = CliRunner().invoke(cli, ["models", "--family", "qwen2.5", "--memory-gb", "16", "--json"])
    assert result.exit_code == 0, result.output
    import json

    data = json.loads(result.stdout)
    fits = {m["name"]: m["fits"] for m in data["models"]}
    assert fits["qwen2.5:7b-4bit"] and not fits["qwen2.5:72b-4bit"]
    assert all(m["local"] == "absent" for m in data["models"])
    assert {"target": "qwen2.5:7b-4bit", "draft": "qwen2.5:0.5b-4bit", "size_gb": 4.57} in data["pairs_that_fit"]
    assert not any(p["target"] == "qwen2.5:72b-4bit" for p in data["pairs_that_fit"])


def test_no_download_refuses_uncached_hub_models():
    result = CliRunner().invoke(cli, ["pair", "qwen2.5:7b-4bit", "qwen2.5:0.5b-4bit", "--no-download"])
    assert result.exit_code == 1
    assert result.output.startswith("Error: mlx-community/Qwen2.5-7B-Instruct-4bit is not in the local Hugging "
                                    "Face cache (")
    assert result.output.rstrip().endswith("run `mlxdraft pull mlx-community/Qwen2.5-7B-Instruct-4bit` first")
