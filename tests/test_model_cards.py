"""Model cards from a real tiny run: sections, Hub metadata, numbers, recipe, runnable usage code, CLI, errors.

One run of the pipeline per module (about 15 s); every card check reads that run's own files, so a number
in a card that drifts from ``metrics.json`` or ``recipe.yaml`` fails here.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml
from huggingface_hub import ModelCard

from sidrec.model_cards.card import SECTIONS, TAGS, render_model_card, write_model_card

from .conftest import ROOT
from .test_pipeline import TINY, recipe_file

REPO_ID = "sidrec-tester/tiny-tiger"


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    from sidrec.training.pipeline import run
    from sidrec.training.recipe import load_recipe

    out = tmp_path_factory.mktemp("card-run")
    run(load_recipe(recipe_file(out), TINY + [f"output_dir={out}"]))
    return out


@pytest.fixture(scope="module")
def metrics(tiny_run) -> dict:
    return json.loads((tiny_run / "metrics.json").read_text())


@pytest.fixture(scope="module")
def card(tiny_run) -> ModelCard:
    return render_model_card(tiny_run, repo_id=REPO_ID)


def section(text: str, heading: str) -> str:
    """The body of ``## heading`` up to the next level-2 heading."""
    match = re.search(rf"^## {re.escape(heading)}\n(.*?)(?=^## |\Z)", text, flags=re.M | re.S)
    assert match, f"no section {heading!r}"
    return match.group(1)


def fenced(text: str, language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```$", text, flags=re.M | re.S)


def table_rows(text: str) -> list[list[str]]:
    """Markdown table rows as lists of stripped cells (separator rows left out)."""
    rows = [[cell.strip() for cell in line.strip().strip("|").split("|")] for line in text.splitlines()]
    return [row for row in rows if len(row) > 1 and not all(set(cell) <= set("-: ") for cell in row)]


def test_card_renders_every_section_in_order(card):
    text = card.text
    positions = [text.find(f"\n## {name}\n") for name in SECTIONS]
    assert all(p >= 0 for p in positions), [name for name, p in zip(SECTIONS, positions) if p < 0]
    assert positions == sorted(positions)
    assert text.lstrip().startswith(f"# {REPO_ID}\n")
    assert not re.search(r"\{\{\s*\w+\s*\}\}|\{%", text)  # no template syntax left unrendered
    assert "(training.png)" in section(text, "Training curves")


def test_metadata_parses_and_model_index_equals_metrics(card, metrics):
    content = str(card)
    front = yaml.safe_load(content.split("---\n")[1])
    assert front["library_name"] == "transformers" and front["license"] == "apache-2.0"
    assert set(TAGS) <= set(front["tags"]) and "tiger" in front["tags"]
    assert front["datasets"] == ["amazon2018_scientific_5core"]
    assert "pipeline_tag" not in front

    data = ModelCard(content).data  # the Hub's own parser, model-index -> EvalResult
    assert data.model_name == REPO_ID
    got = {result.metric_type: result.metric_value for result in data.eval_results}
    want = {f"{name}@{k}": metrics[f"test/{name}@{k}"] for name in ("recall", "ndcg") for k in (5, 10, 20)}
    assert got == want  # exact: the YAML carries every digit of metrics.json
    for result in data.eval_results:
        assert (result.task_type, result.dataset_split) == ("recommendation", "test")
        assert result.dataset_args["users"] == metrics["test/users"] == 200
        assert result.metric_args["num_beams"] == 20


def test_tables_equal_metrics_json(card, metrics):
    rows = table_rows(section(card.text, "Evaluation"))
    header, model_row, popularity_row = rows
    assert header[1:] == [f"{name}@{k}" for name in ("Recall", "NDCG") for k in (5, 10, 20)]
    for row, prefix in ((model_row, "test/"), (popularity_row, "test/popularity/")):
        want = [f"{metrics[f'{prefix}{name}@{k}']:.4f}" for name in ("recall", "ndcg") for k in (5, 10, 20)]
        assert row[1:] == want, row[0]
    assert model_row[0].startswith("TIGER") and popularity_row[0].startswith("Popularity")

    data_section = section(card.text, "Training data")
    counts = table_rows(data_section)[1]
    keys = ("users", "items", "interactions")
    assert counts[:3] == [f"{metrics[f'data/{key}']:,}" for key in keys]
    assert "chronological leave-one-out" in data_section
    assert "first 1,500 users" in data_section  # TINY's data.max_users slice is stated

    code_rows = {row[0]: row[1:] for row in table_rows(section(card.text, "Semantic IDs"))}
    assert code_rows["items whose code is shared (collision rate)"] == [f"{100 * metrics['codes/collision_rate']:.1f}%"]
    assert code_rows["level 0: codes used (of 32)"] == [f"{100 * metrics['codes/level0/usage']:.1f}%"]


def test_recipe_block_parses_back_to_recipe_yaml(card, tiny_run):
    blocks = fenced(section(card.text, "Training recipe"), "yaml")
    assert len(blocks) == 1
    assert yaml.safe_load(blocks[0]) == yaml.safe_load((tiny_run / "recipe.yaml").read_text())


def test_limitations_are_honest_about_the_run(card):
    limitations = section(card.text, "Limitations")
    assert "not reproduced" in limitations
    assert "tested on 200 of" in limitations
    citations = section(card.text, "Citation")
    for key in ("rajput2023tiger", "fu2026diger", "xue2026soda", "zhang2025dmrec"):
        assert f"{{{key}," in citations
    assert "Recommender Systems with Generative Retrieval" in fenced(citations, "bibtex")[0]


def run_snippet(code: str, tmp_path: Path, name: str) -> str:
    script = tmp_path / f"{name}.py"
    script.write_text(code)
    done = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_usage_snippets_run_as_written(card, tiny_run, tmp_path):
    from transformers import AutoModel, AutoTokenizer

    model_dir = tiny_run / "model"
    with_sidrec, remote_code = fenced(section(card.text, "How to use"), "python")
    assert "import sidrec" in with_sidrec and "trust_remote_code=True" in remote_code
    assert f'"{REPO_ID}"' in with_sidrec and f'"{REPO_ID}"' in remote_code

    printed = run_snippet(with_sidrec.replace(REPO_ID, str(model_dir)), tmp_path, "usage").strip().splitlines()
    rows = [re.fullmatch(r"\s*(\d+)\.\s+(-?\d+\.\d+)  (\S+)  (.*)", line) for line in printed]
    assert all(rows), printed
    assert [int(row.group(1)) for row in rows] == list(range(1, 11))
    items = {row["item_id"]: row["title"] for row in map(json.loads, open(model_dir / "items.jsonl"))}
    assert all(items[row.group(3)][:80].rstrip() == row.group(4).rstrip() for row in rows)

    # trust_remote_code: where `import sidrec` fails, the code saved beside the weights gives the same ranking.
    blocked = "import sys\nsys.modules['sidrec'] = None\n" + remote_code.replace(REPO_ID, str(model_dir))
    remote_items = json.loads(run_snippet(blocked, tmp_path, "remote").strip().splitlines()[-1])
    model, tokenizer = AutoModel.from_pretrained(model_dir), AutoTokenizer.from_pretrained(model_dir)
    assert remote_items == model.recommend([[0, 1, 2]], tokenizer, top_k=10).items[0].tolist()


def test_cli_card_writes_readme_and_plot(tiny_run, capsys):
    from sidrec.cli import main

    assert main(["card", str(tiny_run), "--repo-id", REPO_ID]) == 0
    readme = tiny_run / "model" / "README.md"
    assert str(readme) in capsys.readouterr().out
    assert ModelCard.load(readme).content == render_model_card(tiny_run, repo_id=REPO_ID).content
    assert (tiny_run / "model" / "training.png").read_bytes() == (tiny_run / "training.png").read_bytes()

    assert main(["card", str(tiny_run / "model")]) == 0  # the model directory is taken for its run
    local = ModelCard.load(readme)
    assert local.data.model_name == "tiny" and f'"{tiny_run / "model"}"' in local.text


def test_plot_redrawn_from_checkpoint_when_run_has_none(tiny_run, tmp_path):
    """Runs saved before the plot existed (like runs/demo-k256) get it from their last checkpoint's log."""
    run = tmp_path / "old-run"
    (run / "model").mkdir(parents=True)
    for name in ("metrics.json", "recipe.yaml", "model/config.json"):
        shutil.copyfile(tiny_run / name, run / name)
    for state in tiny_run.glob("checkpoints/checkpoint-*/trainer_state.json"):
        (run / state.parent.relative_to(tiny_run)).mkdir(parents=True)
        shutil.copyfile(state, run / state.relative_to(tiny_run))
    write_model_card(run)
    assert (run / "model" / "training.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    shutil.rmtree(run / "checkpoints")
    (run / "model" / "training.png").unlink()
    assert "No training curves were saved" in render_model_card(run).text


def test_missing_metrics_gives_a_clear_error(tmp_path, capsys):
    from sidrec.cli import main

    (tmp_path / "recipe.yaml").write_text("name: unfinished\n")
    with pytest.raises(FileNotFoundError, match=r"no metrics\.json.*finished run.*sidrec card"):
        render_model_card(tmp_path)
    assert main(["card", str(tmp_path)]) == 2
    assert "no metrics.json" in capsys.readouterr().err
    with pytest.raises(FileNotFoundError, match="does not exist"):
        write_model_card(tmp_path / "nope")


def test_diger_card_names_the_joint_settings(tiny_run, metrics, tmp_path):
    """A joint run's card says DIGER, lists its settings and shows the final codes beside the fitted ones."""
    run = tmp_path / "diger"
    run.mkdir()
    recipe = yaml.safe_load((tiny_run / "recipe.yaml").read_text())
    recipe["joint"] = {"enabled": True, "uncertainty_decay": "sdud", "tokenizer_learning_rate": 1e-5}
    recipe["training"]["objectives"] = {"ce": 1.0, "quantizer": 1.0}
    (run / "recipe.yaml").write_text(yaml.safe_dump(recipe, sort_keys=False))
    final = {
        f"codes/final/{key[len('codes/') :]}": value / 2 for key, value in metrics.items() if key.startswith("codes/")
    }
    (run / "metrics.json").write_text(json.dumps({**metrics, **final}))

    card = render_model_card(run)
    assert "diger" in card.data.tags
    details = section(card.text, "Model details")
    assert "DIGER" in details and "SDUD" in details and "tokenizer learning rate 1e-05" in details
    codes = {row[0]: row[1:] for row in table_rows(section(card.text, "Semantic IDs"))}
    rate = metrics["codes/collision_rate"]
    assert codes["items whose code is shared (collision rate)"] == [f"{100 * rate:.1f}%", f"{50 * rate:.1f}%"]
    assert "fu2026diger" in fenced(section(card.text, "Citation"), "bibtex")[0]


def _run_with_recipe(tiny_run: Path, tmp_path: Path, **sections) -> Path:
    """A copy of the tiny run whose recipe.yaml has ``sections`` merged in (the card reads only files)."""
    run_dir = tmp_path / "run"
    shutil.copytree(tiny_run, run_dir, ignore=shutil.ignore_patterns("checkpoints"))
    recipe = yaml.safe_load((run_dir / "recipe.yaml").read_text())
    for name, values in sections.items():
        recipe[name] = {**(recipe.get(name) or {}), **values}
    (run_dir / "recipe.yaml").write_text(yaml.safe_dump(recipe, sort_keys=False))
    return run_dir


def test_a_soda_run_over_frozen_codes_is_labelled_tiger_plus_soda(tiny_run, tmp_path):
    """The method comes from the recipe: frozen codes inside a joint model are TIGER's, and SODA is used."""
    run_dir = _run_with_recipe(
        tiny_run,
        tmp_path,
        joint={"enabled": True, "trainable": False, "uncertainty_decay": "none"},
        training={"objectives": {"ce": 1.0, "soda": {"weight": 0.1}}},
    )
    card = render_model_card(run_dir)
    text = card.text
    assert "trained together with the recommender" not in text and "(**TIGER**)" in text
    assert "**SODA**" in text and "weight 0.1" in text and "the codes themselves stay frozen" in text
    used, unused = text.split("Other methods of the sidrec project, not used by this model:")
    assert "xue2026soda" in used and "xue2026soda" not in unused
    assert "tiger+soda" in card.data.tags and "TIGER + SODA (this model)" in text


def test_a_trainable_joint_run_is_labelled_diger(tiny_run, tmp_path):
    run_dir = _run_with_recipe(
        tiny_run, tmp_path, joint={"enabled": True}, training={"objectives": {"ce": 1.0, "quantizer": 1.0}}
    )
    card = render_model_card(run_dir)
    assert "trained together with the recommender (**DIGER**)" in card.text
    assert "diger-end-to-end-frqud" in card.data.tags
    used, _ = card.text.split("Other methods of the sidrec project, not used by this model:")
    assert "fu2026diger" in used and "xue2026soda" not in used


def test_a_reference_mode_run_says_so_and_shows_its_churn(tiny_run, metrics, tmp_path):
    run_dir = _run_with_recipe(
        tiny_run,
        tmp_path,
        joint={"enabled": True, "mode": "reference", "uncertainty_decay": "sdud"},
        training={"objectives": {"ce": 1.0, "quantizer": 1.0}},
    )
    final = {f"codes/final/{key[len('codes/') :]}": value for key, value in metrics.items() if key.startswith("codes/")}
    churn = {f"codes/final/churn_from_start/level{level}": 0.1 * (level + 1) for level in range(3)}
    (run_dir / "metrics.json").write_text(json.dumps({**metrics, **final, **churn}))
    card = render_model_card(run_dir)
    details = section(card.text, "Model details")
    assert "**reference mode**" in details and "detached" in details and "end-to-end" not in details
    # the mode's defaults, resolved: centred logits, Sinkhorn codes, SDUD's encoder all but its last layer frozen
    assert "code logits: centred" in details and "Sinkhorn-balanced codes (epsilon 0.003, 50 iterations)" in details
    assert "frozen encoder layers: all_but_last" in details
    assert "diger-reference-sdud" in card.data.tags
    codes = {row[0]: row[1:] for row in table_rows(section(card.text, "Semantic IDs"))}
    assert codes["level 2: items whose code moved in training"] == ["-", "30.0%"]


def test_the_plot_draws_churn_when_the_run_logged_it(tmp_path):
    from sidrec.model_cards.plots import plot_training

    rows = [
        {"epoch": float(e), "codes/churn/level0": 0.1 / (e + 1), "codes/churn_from_start/level0": 0.1} for e in range(3)
    ]
    assert plot_training(rows, tmp_path / "churn.png").exists()  # the churn panel alone makes a figure
    assert plot_training([{"epoch": 1.0, "codes/churn/any": 0.2}], tmp_path / "none.png") is None  # not per level


# ----- the wheel, not the clone ----------------------------------------------------------------------
# CI installs sidrec editable (``pip install -e``), which reads templates and modules from the source
# tree; a file missing from the wheel's package data would only fail for users who ``pip install``.
# The test builds the wheel (offline, no build isolation), installs it into an empty folder and runs a
# Python with the editable install switched off, from a directory without the sources: it renders a
# run's card and a SASRec run's card, checks the adapter template ships, loads the ``evaluate`` module
# from the installed package and recommends from a saved model.
USER_SCRIPT = """
import sys
sys.meta_path[:] = [finder for finder in sys.meta_path if "editable" not in type(finder).__module__.lower()]
sys.path.insert(0, {target!r})
import json
from pathlib import Path

import evaluate
import sidrec
from sidrec.metrics import SID_RANKING
from sidrec.model_cards.card import render_model_card
from transformers import AutoModel, AutoTokenizer

installed = Path(sidrec.__file__).parents[1]
assert installed == Path({target!r}), installed  # the wheel's copy, not the clone
cards = Path(sidrec.__file__).parent / "model_cards"
assert (cards / "adapter_template.md").exists() and (cards / "baseline_template.md").exists()
tiger = render_model_card({tiger_run!r})
sasrec = render_model_card({sasrec_run!r})
metric = evaluate.load(SID_RANKING)
scores = metric.compute(predictions=[[1, 2, 3]], references=[2], ks=[1, 3], num_items=10)
model = AutoModel.from_pretrained({model_dir!r})
tokenizer = AutoTokenizer.from_pretrained({model_dir!r})
items = model.recommend([[0, 1, 2]], tokenizer, top_k=5).items[0].tolist()
print(json.dumps({{"tiger": "## Semantic IDs" in tiger.text, "sasrec": "SASRec" in sasrec.text,
                  "sasrec_codes": "## Semantic IDs" in sasrec.text, "scores": scores, "items": items,
                  "metric_file": str(SID_RANKING)}}))
"""


@pytest.mark.slow
def test_the_installed_wheel_renders_cards_loads_the_metric_and_recommends(tiny_run, sasrec_run, tmp_path):
    dist, target = tmp_path / "dist", tmp_path / "site"
    build = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(dist), "."]
    subprocess.run(build, cwd=ROOT, check=True, capture_output=True)
    (wheel,) = dist.glob("sidrec-*.whl")
    install = [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)]
    subprocess.run(install, check=True, capture_output=True)

    script = USER_SCRIPT.format(
        target=str(target),
        tiger_run=str(tiny_run),
        sasrec_run=str(sasrec_run[0]),
        model_dir=str(tiny_run / "model"),
    )
    elsewhere = tmp_path / "user"
    elsewhere.mkdir()
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)], cwd=elsewhere, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-3000:]
    found = json.loads(result.stdout.strip().splitlines()[-1])
    assert found["tiger"] and found["sasrec"] and not found["sasrec_codes"]
    assert found["metric_file"].startswith(str(target))
    assert found["scores"]["recall@1"] == 0.0 and found["scores"]["recall@3"] == 1.0
    assert len(set(found["items"])) == 5 and all(item >= 0 for item in found["items"])


def test_method_settings_on_the_card_fill_in_the_objectives_own_defaults():
    """The card's SODA / DMRec settings come from the objective's signature, not from defaults typed twice."""
    from sidrec.training.objectives import objective_settings

    soda = {"weight": 0.5, "temperature": 1.0, "direction": "item_to_user", "negatives": "in_batch"}
    assert objective_settings({"ce": 1.0, "soda": 0.5}, "soda") == soda
    assert objective_settings({"ce": 1.0}, "soda") is None
    assert objective_settings({"dmrec": {"beta": 0.1}}, "dmrec") == {"weight": 1.0, "strategy": "mddm", "beta": 0.1}
