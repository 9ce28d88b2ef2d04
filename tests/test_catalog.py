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
               for e in families[f] if e.engine == "mlx-lm")
    assert all(e.can_target and e.can_draft for e in families["smollm2"])


def test_every_listed_repo_is_in_the_verified_catalog():
    import pathlib

    catalog = pathlib.Path(__file__).parents[2] / "shared" / "data" / "hub-catalog.md"
    if not catalog.exists():
        pytest.skip("the shared Hub catalog is not beside this checkout")
    text = catalog.read_text()
    for family in ("qwen2.5", "qwen2.5-coder", "llama3"):
        for entry in family_entries(family):
            if entry.engine == "mlx-lm":
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
    engines = {m["name"]: m["engine"] for m in data["models"]}
    assert engines["qwen2.5:7b-4bit"] == "mlx-lm" and engines["qwen2.5:7b-q4_k_m"] == "llama.cpp"
    assert all(engines[p["target"]] == engines[p["draft"]] for p in data["pairs_that_fit"])  # no mixed pairs
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


# --- GGUF entries and precision words across engines -------------------------------------------------

def entry(precision, engine="mlx-lm"):
    from mlxdraft.catalog import CatalogEntry

    return CatalogEntry(name=f"x:{precision}", family="x", source="hub", params_b=1, precision=precision,
                        role="both", size_gb=1, repo="a/b", engine=engine)


@pytest.mark.parametrize("word, selected", [
    ("fp16", {"fp16", "f16"}), ("f16", {"fp16", "f16"}), ("float16", {"fp16", "f16"}),
    ("fp32", {"fp32", "f32"}), ("bf16", {"bf16"}),
    ("q8", {"8bit", "q8_0"}), ("8bit", {"8bit", "q8_0"}), ("8-bit", {"8bit", "q8_0"}),
    ("q6", {"6bit", "q6_k"}), ("6bit", {"6bit", "q6_k"}), ("q5", {"q5_k_m"}),
    ("q4", {"4bit", "q4_0", "q4_k_m"}), ("4bit", {"4bit", "q4_0", "q4_k_m"}),
    ("q4_k_m", {"q4_k_m"}), ("Q4_K_M", {"q4_k_m"}), ("q4_0", {"q4_0"}), ("q8_0", {"q8_0"}), ("3bit", {"3bit"}),
    ("", set()), ("nonsense", set()),
])
def test_precision_words_are_the_same_across_engines(word, selected):
    from mlxdraft.catalog import precision_matches

    mlx = [entry(p) for p in ("fp16", "bf16", "fp32", "8bit", "6bit", "4bit", "3bit")]
    gguf = [entry(p, "llama.cpp") for p in ("f16", "f32", "q8_0", "q6_k", "q5_k_m", "q4_0", "q4_k_m")]
    assert {e.precision for e in mlx + gguf if precision_matches(e, word)} == selected


def test_gguf_bits():
    assert [entry(p, "llama.cpp").bits for p in ("f32", "f16", "bf16", "q8_0", "q6_k", "q5_k_m", "q4_k_m", "iq4_xs")] \
        == [32, 16, 16, 8, 6, 5, 4, 4]


def test_sweep_precision_filters_pick_both_engines():
    from mlxdraft.sweep import choose_models

    both = ("mlx-lm", "llama.cpp")
    targets, drafts = choose_models(["smollm2"], [], [], target_precisions=["fp16"], draft_precisions=["q4"],
                                    engines=both)
    assert [t.name for t in targets] == ["smollm2:fp16", "smollm2:f16"]
    assert [d.name for d in drafts] == ["smollm2:q4", "smollm2:q4_0"]
    targets, _ = choose_models(["smollm2"], [], [], target_precisions=["q8_0"], engines=both)
    assert [t.name for t in targets] == ["smollm2:q8_0"]
    targets, _ = choose_models(["smollm2"], [], [], target_precisions=["fp16"])  # the default engine's only
    assert [t.name for t in targets] == ["smollm2:fp16"]


def test_gguf_entries_of_the_bundled_lists():
    families = load_catalog()
    gguf = {e.name: e for f in families.values() for e in f if e.engine == "llama.cpp"}
    assert {"smollm2:f32", "smollm2:f16", "smollm2:q8_0", "smollm2:q4_0", "qwen2.5:7b-q4_k_m",
            "qwen2.5:0.5b-f16", "llama3:3.1-8b-q4_k_m", "llama3:3.2-1b-f16", "llama3:3.3-70b-q8_0"} <= set(gguf)
    smollm2 = gguf["smollm2:f16"]
    assert (smollm2.source, smollm2.variant, smollm2.files) == ("offline", "f16", None)
    big = gguf["qwen2.5:72b-q4_k_m"]
    assert big.files[0] == "qwen2.5-72b-instruct-q4_k_m-00001-of-00012.gguf" and len(big.files) == 12
    assert gguf["llama3:3.1-8b-q4_k_m"].files == ("Meta-Llama-3.1-8B-Instruct-Q4_K_M.gguf",)
    assert all(e.files and all(f.endswith(".gguf") for f in e.files) for e in gguf.values() if e.source == "hub")


def test_every_gguf_file_is_in_the_verified_table():
    """scripts/gguf-catalog.md records where each repo id and file name was seen; the lists hold
    exactly its rows (split ones with every part)."""
    import pathlib
    import re

    table = (pathlib.Path(__file__).parents[1] / "scripts" / "gguf-catalog.md").read_text()
    rows = {}
    for line in table.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) >= 8 and re.fullmatch(r"\d+", cells[6]):
            family, size, _, precision, repo, file, parts = cells[:7]
            rows[f"{family}:{size}-{precision}"] = (repo, file, int(parts), cells[7])
    listed = {e.name: e for f in ("qwen2.5", "llama3") for e in family_entries(f) if e.engine == "llama.cpp"}
    assert set(listed) == set(rows)
    for name, (repo, file, parts, evidence) in rows.items():
        assert evidence.startswith(("PAGE", "CODE")), name
        assert listed[name].repo == repo
        assert len(listed[name].files) == parts
        assert listed[name].files[0] == (file if parts == 1 else file.replace(".gguf", f"-00001-of-{parts:05d}.gguf"))


def test_generated_lists_are_up_to_date(tmp_path):
    import pathlib
    import subprocess
    import sys

    root = pathlib.Path(__file__).parents[1]
    catalog = root.parent / "shared" / "data" / "hub-catalog.md"
    if not catalog.exists():
        catalog = root.parents[1] / "shared" / "data" / "hub-catalog.md"
    if not catalog.exists():
        pytest.skip("the shared Hub catalog is not beside this checkout")
    subprocess.run([sys.executable, str(root / "scripts" / "model_lists_from_catalog.py"), str(catalog),
                    "--out", str(tmp_path)], check=True, capture_output=True)
    for name in ("qwen2.5.toml", "qwen2.5-coder.toml", "llama3.toml"):
        assert (tmp_path / name).read_text() == (root / "model_lists" / name).read_text(), name


@pytest.mark.parametrize("model, message", [
    ('engine = "llama.cpp"\nprecision = "4bit"\nfiles = ["m.gguf"]\n',
     "model 1: precision must be a GGUF type in lower case (f16, q8_0, q6_k, q5_k_m, q4_k_m, ...), not \"4bit\""),
    ('engine = "llama.cpp"\nprecision = "q4_k_m"\n',
     'model 1: llama.cpp hub models need files = ["name.gguf"] (every part of a split GGUF)'),
    ('precision = "q4_k_m"\n', 'model 1: precision must be bf16, fp16, fp32 or <n>bit, not "q4_k_m"'),
    ('precision = "4bit"\nfiles = ["m.gguf"]\n',
     "model 1: files are only for llama.cpp models (GGUF); mlx-lm downloads the whole model folder"),
    ('engine = "llamacpp"\nprecision = "q4_k_m"\n', 'model 1: engine must be one of mlx-lm, llama.cpp, not "llamacpp"'),
    ('engine = "llama.cpp"\nprecision = "q4_k_m"\nfiles = ["m.bin"]\n',
     'model 1: files must be a list of .gguf file names in the repo, like ["Model-Q4_K_M.gguf"], not a list'),
    ('engine = "llama.cpp"\nprecision = "q4_k_m"\nfiles = ["../m.gguf"]\n',
     'model 1: files must be a list of .gguf file names in the repo, like ["Model-Q4_K_M.gguf"], not a list'),
    ('engine = "llama.cpp"\nprecision = "q8_0"\nfiles = ["m-00001-of-00003.gguf", "m-00002-of-00003.gguf"]\n',
     "model 1: files must list every part of the split GGUF in order, m-00001-of-00003.gguf to "
     "m-00003-of-00003.gguf"),
    ('engine = "llama.cpp"\nprecision = "q8_0"\nfiles = ["a.gguf", "b.gguf"]\n',
     "model 1: files name several .gguf files, but the first is not part 1 of a split GGUF "
     "(<name>-00001-of-0000N.gguf); list one model per entry"),
])
def test_gguf_list_errors(tmp_path, model, message):
    text = f'family = "mine"\n\n[[models]]\nname = "mine:x"\nrepo = "me/x"\nparams_b = 1\nsize_gb = 1\n{model}'
    assert list_error(tmp_path, text) == f"model list PATH, {message}"


def test_list_level_engine(tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text('family = "mine"\nengine = "llama.cpp"\n\n[[models]]\nname = "mine:x"\nrepo = "me/x"\n'
                    'files = ["x-00001-of-00002.gguf", "x-00002-of-00002.gguf"]\nparams_b = 1\n'
                    'precision = "q6_k"\nsize_gb = 1\n')
    (e,) = load_list_file(path)
    assert (e.engine, e.files, e.bits) == ("llama.cpp", ("x-00001-of-00002.gguf", "x-00002-of-00002.gguf"), 6)


def test_models_engine_filter_and_table():
    runner = CliRunner()
    result = runner.invoke(cli, ["models", "--family", "smollm2", "--engine", "llama.cpp", "--json",
                                 "--memory-gb", "16"])
    assert result.exit_code == 0, result.output
    import json

    data = json.loads(result.stdout)
    assert [m["name"] for m in data["models"]] == ["smollm2:f32", "smollm2:f16", "smollm2:q8_0", "smollm2:q4_0"]
    assert {m["engine"] for m in data["models"]} == {"llama.cpp"} and len(data["pairs_that_fit"]) == 12
    table = runner.invoke(cli, ["models", "--family", "smollm2", "--memory-gb", "16"]).output
    header = table.splitlines()[0].split()
    assert header[:3] == ["name", "engine", "repo"]
    assert any(line.split()[:2] == ["smollm2:q8_0", "llama.cpp"] for line in table.splitlines())
    assert any(line.split()[:2] == ["smollm2:q8", "mlx-lm"] for line in table.splitlines())
    bad = runner.invoke(cli, ["models", "--engine", "vllm"])
    assert bad.exit_code == 2 and "'vllm' is not one of 'mlx-lm', 'llama.cpp'" in bad.output


def test_model_kinds_are_refused_by_the_other_engine(tmp_path):
    from mlxdraft.sources import resolve_gguf, resolve_model

    with pytest.raises(ModelNotFoundError, match="smollm2:f16 is a GGUF model for the llama.cpp engine, not an MLX "
                                                 "model; run it with --engine llama.cpp"):
        resolve_model("smollm2:f16", allow_download=False)
    with pytest.raises(ModelNotFoundError, match=r"smollm2:fp16 is an MLX model \(engine mlx-lm\), not a GGUF model"):
        resolve_gguf("smollm2:fp16", allow_download=False)
    with pytest.raises(ModelNotFoundError, match="smollm2:q8_0 is not built yet and --no-download forbids"):
        resolve_gguf("smollm2:q8_0", allow_download=False)
    with pytest.raises(ModelNotFoundError, match="is not in the local Hugging Face cache"):
        resolve_gguf("qwen2.5:0.5b-q8_0", allow_download=False)
