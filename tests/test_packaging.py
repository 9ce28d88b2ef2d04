"""What the wheel holds: every package folder is listed in pyproject.toml (the packages are listed, not
found, since the model lists are mapped in from the top of the checkout), and every data file the code
reads is package data. `make wheel-check` (run by .ci/run) then installs the built wheel and uses it."""

import sys
from fnmatch import fnmatch
from importlib import resources
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from mlxdraft.catalog import BUNDLED_PACKAGE, bundled_lists, load_catalog

ROOT = Path(__file__).resolve().parent.parent
CONFIG = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]


def package_folder(package: str) -> Path:
    mapped = CONFIG.get("package-dir", {}).get(package)
    return ROOT / mapped if mapped else ROOT / package.replace(".", "/")


def test_every_package_folder_is_listed():
    on_disk = {".".join(path.parent.relative_to(ROOT).parts) for path in (ROOT / "mlxdraft").rglob("*.py")}
    on_disk |= {".".join(path.relative_to(ROOT).parts) for path in (ROOT / "mlxdraft").rglob("*")
                if path.is_dir() and path.name != "__pycache__"}
    assert on_disk - set(CONFIG["packages"]) == set()
    assert all(package_folder(package).is_dir() for package in CONFIG["packages"])


def test_every_data_file_is_package_data():
    patterns = CONFIG["package-data"]
    for package in CONFIG["packages"]:
        folder = package_folder(package)
        for path in folder.iterdir():
            if path.is_file() and path.suffix != ".py":
                assert any(fnmatch(path.name, pattern) for pattern in patterns.get(package, [])), (
                    f"{path.relative_to(ROOT)} would be left out of the wheel")


def test_model_lists_load_through_importlib_resources(monkeypatch, tmp_path):
    monkeypatch.setenv("MLXDRAFT_HOME", str(tmp_path))
    monkeypatch.delenv("MLXDRAFT_MODEL_LISTS", raising=False)
    names = [name for name, _ in bundled_lists()]
    assert names == sorted(path.name for path in (ROOT / "model_lists").glob("*.toml"))
    assert resources.files(BUNDLED_PACKAGE).joinpath("qwen2.5.toml").is_file()
    catalog = load_catalog()
    assert {"qwen2.5", "qwen2.5-coder", "llama3", "smollm2"} <= set(catalog)
    engines = {e.engine for entries in catalog.values() for e in entries}
    assert engines == {"mlx-lm", "llama.cpp"}  # the GGUF entries ship in the same lists
