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
    with pytest.raises(ModelNotFoundError, match="no model 'qwen2.5:9b-4bit' in the qwen2.5 list; did you mean .*"
                                                 "'qwen2.5:3b-4bit'.*\\? choose one of: "):
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


GOOD_MODEL = 'name = "mine:x"\nrepo = "me/x"\nparams_b = 1\nprecision = "4bit"\nrole = "draft"\nsize_gb = 0.5\n'


def list_error(tmp_path, text):
    path = tmp_path / "mine.toml"
    path.write_text(text)
    with pytest.raises(InvalidInputError) as excinfo:
        load_list_file(path)
    return str(excinfo.value).replace(str(path), "PATH")


@pytest.mark.parametrize("change, message", [
    ('repo = ["a/b"]', 'model 2: repo must be a Hub repo id like "owner/name", not a list'),
    ('repo = "not a repo"', 'model 2: repo must be a Hub repo id like "owner/name", not "not a repo"'),
    ("name = 3", 'model 2: name must be a short name like "family:variant", not 3'),
    ('name = "noprefix"', 'model 2: name must be a short name like "family:variant", not "noprefix"'),
    ('name = "mine:x"', "model 2: the name 'mine:x' is already used by another model"),
    ('params_b = "x"', 'model 2: params_b must be a positive number (billions of parameters), not "x"'),
    ("params_b = true", "model 2: params_b must be a positive number (billions of parameters), not true"),
    ("size_gb = nan", "model 2: size_gb must be a positive number (GB of weights), not nan"),
    ("size_gb = inf", "model 2: size_gb must be a positive number (GB of weights), not inf"),
    ("size_gb = -1.5", "model 2: size_gb must be a positive number (GB of weights), not -1.5"),
    ("params_b = 0", "model 2: params_b must be a positive number (billions of parameters), not 0"),
    ('precision = "xbit"', 'model 2: precision must be bf16, fp16, fp32 or <n>bit, not "xbit"'),
    ('role = "both-ways"', 'model 2: role must be one of target, draft, both, not "both-ways"'),
    ("size = {}", "model 2: size must be a size label like \"7b\", not a table"),
])
def test_list_with_wrong_types_names_file_model_and_field(tmp_path, change, message):
    key = change.split(" ", 1)[0]
    second = "\n".join(line for line in GOOD_MODEL.replace('"mine:x"', '"mine:y"').splitlines()
                       if not line.startswith(key + " ")) + "\n" + change + "\n"
    text = f'family = "mine"\n\n[[models]]\n{GOOD_MODEL}\n[[models]]\n{second}'
    assert list_error(tmp_path, text) == f"model list PATH, {message}"


@pytest.mark.parametrize("text, message", [
    ('family = "mine"\nmodels = 3\n', "model list PATH: models is 3; write each model as a [[models]] table"),
    ('family = "mine"\nmodels = "abc"\n',
     'model list PATH: models is "abc"; write each model as a [[models]] table'),
    ('family = "mine"\nmodels = [1, 2]\n',
     "model list PATH, model 1 is 1, not a table; write each model as a [[models]] table"),
    ('family = "mine"\nmodels = []\n', "model list PATH has no [[models]] entries"),
    ("family = 3\n", 'model list PATH needs a top-level family = "name"'),
    ('family = "mine"\nsource = ["hub"]\n', 'model list PATH: source must be "hub" or "offline", not a list'),
    ('family = "mine"\n[[models]]\nname = "mine:x"\nparams_b = 1\nprecision = "4bit"\nsize_gb = 1\n',
     'model list PATH, model 1: hub models need repo = "owner/name"'),
])
def test_list_with_wrong_structure(tmp_path, text, message):
    assert list_error(tmp_path, text) == message


def test_bad_list_through_the_cli(tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text(f'family = "mine"\n\n[[models]]\n{GOOD_MODEL.replace("size_gb = 0.5", "size_gb = nan")}')
    result = CliRunner().invoke(cli, ["models", "--family", str(path)])
    assert result.exit_code == 1
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert result.output == (f"Error: model list {path}, model 1: size_gb must be a positive number (GB of weights), "
                             "not nan\n")


def test_list_paths_with_an_unknown_user(monkeypatch):
    monkeypatch.setenv("MLXDRAFT_MODEL_LISTS", "~no-such-user-here/lists")
    result = CliRunner().invoke(cli, ["models"])
    assert result.exit_code == 1
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert result.output == ("Error: MLXDRAFT_MODEL_LISTS entry ~no-such-user-here/lists cannot be used: there is "
                             "no user 'no-such-user-here' on this machine for ~no-such-user-here to stand for; write "
                             "the path out in full\n")
