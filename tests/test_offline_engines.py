"""The done-when of issue #22, on the real offline models: `mlxdraft sweep --family smollm2 --engines
mlx-lm,llama.cpp` runs offline (SmolLM2 converted to MLX folders and written as GGUFs), measures each engine
on its own models with the methods it runs, and every report format shows both engines side by side. Slow:
CI runs it; skip it locally with `make test-fast`."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

CACHE = Path(os.environ.get("MLXDRAFT_TEST_CACHE", Path(__file__).parent.parent / ".cache" / "home"))


def mlxdraft(*args, cwd):
    env = {**os.environ, "MLXDRAFT_HOME": str(CACHE), "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "mlxdraft", *args], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=1200)


def test_a_sweep_of_both_engines_runs_offline_and_every_report_shows_both(tmp_path):
    pytest.importorskip("xllamacpp")
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"category": "chat", "prompt": text}) + "\n" for text in (
        "What is the capital of France?", "Name three colours.", "Say hello in Spanish.")), encoding="utf-8")
    out = tmp_path / "both.json"
    done = mlxdraft("sweep", "--family", "smollm2", "--engines", "mlx-lm,llama.cpp", "--target-precisions", "fp16",
                    "--draft-precisions", "q8", "-k", "2", "--methods", "draft,llama.cpp-draft", "--max-tokens", "8",
                    "-w", "0", "--prompts", str(prompts), "-o", str(out), cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(out.read_text())
    engines = {group["engine"]: group for group in results["groups"].values()}
    assert set(engines) == {"mlx-lm", "llama.cpp"}
    assert {s["method"] for s in engines["mlx-lm"]["samples"]} == {"baseline", "draft"}
    assert {s["method"] for s in engines["llama.cpp"]["samples"]} == {"baseline", "llama.cpp-draft"}
    assert engines["llama.cpp"]["target"] == "smollm2:f16" and engines["llama.cpp"]["draft"] == "smollm2:q8_0"
    for group in engines.values():  # greedy: speculative output equals the target's own, on both engines
        by_prompt = {}
        for sample in group["samples"]:
            by_prompt.setdefault(sample["prompt_index"], {})[sample["method"]] = sample["token_ids"]
        assert all(len(set(map(tuple, runs.values()))) == 1 for runs in by_prompt.values()), group["engine"]
    assert set(results["engines"]) == {"mlx-lm", "llama.cpp"} and results["schema_version"] == 3
    for fmt in ("table", "markdown", "html", "csv", "json"):
        shown = mlxdraft("report", str(out), "--format", fmt, cwd=tmp_path)
        assert shown.returncode == 0, shown.stderr
        assert "llama.cpp" in shown.stdout and "mlx-lm" in shown.stdout, fmt
        assert "smollm2:f16" in shown.stdout and "smollm2:fp16" in shown.stdout, fmt
    html = mlxdraft("report", str(out), "--format", "html", cwd=tmp_path).stdout
    assert 'id="engines"' in html and "not interleaved" in html
