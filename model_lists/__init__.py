"""The curated model lists (one TOML file per family; format in `mlxdraft/catalog.py`).

This folder is the source of the lists and ships inside the package as `mlxdraft.model_lists`
(pyproject.toml maps it), so that an installed wheel reads them through importlib.resources."""
