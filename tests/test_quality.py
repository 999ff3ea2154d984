"""The results harness: the paired test by hand, the table renderer on a hand-made file, grid resume,
and the README's tables equal to what the committed result files render."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from sidrec.training.metrics import ranking_metrics

from .conftest import ROOT, load_benchmark_script

runner = load_benchmark_script("quality_runner")
tables = load_benchmark_script("quality_tables")
import quality_grids as grids  # noqa: E402  (by name, as the runner imports it: the GRIDS run_grid reads)


@pytest.mark.parametrize(
    "a, b, expected",
    [
        ([1, 1, 1], [0, 0, 0], 2 / 8),  # only the two all-same-sign flips reach |sum| 3
        ([1, 0, 1, 1], [0, 0, 0, 1], 2 / 4),  # two non-zero differences (+1, +1): |sum| 2 in 2 of 4
        ([2, 1, 0], [0, 0, 1], 6 / 8),  # differences 2, 1, -1: sums 4, 2, 2, 0, 0, -2, -2, -4; |s| >= 2 in 6
        ([0.5, 0.5], [0.5, 0.5], 1.0),  # no difference at all
    ],
)
def test_paired_randomization_test_by_hand(a, b, expected):
    assert tables.paired_randomization_test(np.array(a), np.array(b)) == pytest.approx(expected)


def test_randomization_test_on_many_users_is_seeded_and_detects_a_real_gap():
    rng = np.random.default_rng(1)
    better = (rng.random(2000) < 0.12).astype(float)
    worse = better * (rng.random(2000) > 0.25)  # the same users, a quarter of the hits lost
    p = tables.paired_randomization_test(better, worse)
    assert p < 0.001 and p == tables.paired_randomization_test(better, worse)
    assert tables.paired_randomization_test(better, better[::-1].copy()) > 0.05  # no systematic gap


def test_hits_at_k_from_target_ranks():
    assert tables.hits_at(np.array([0, 4, 9, 10, -1]), 10).tolist() == [1, 1, 1, 0, 0]


def test_per_user_recall_of_item_sets_is_the_share_of_held_out_items_ranked_below_k(tmp_path):
    _ranks(tmp_path, "mult-vae/demo/seed1", [[0, 15], [-1], [2, 3, 40]])
    ranks = runner.load_ranks("toy", "mult-vae/demo/seed1", tmp_path)
    assert tables.hits_at(ranks, 10).tolist() == pytest.approx([1 / 2, 0, 2 / 3])
    assert tables.hits_at(ranks, 20).tolist() == pytest.approx([1, 0, 2 / 3])


def test_per_user_ndcg_by_hand_and_as_the_training_metrics_define_it(tmp_path):
    # leave-one-out: 1 / log2(rank + 2) below the cut-off, 0 at or past it and when not ranked
    ranks = np.array([0, 1, 9, 10, -1])
    expected = [1.0, 1 / np.log2(3), 1 / np.log2(11), 0.0, 0.0]
    assert tables.ndcg_at(ranks, 10).tolist() == pytest.approx(expected)
    # item sets: discounted hits over the ideal DCG of min(k, |held-out|) hits
    _ranks(tmp_path, "mult-vae-mddm/demo/seed1", [[0, 5], [9], [2, 3, 4]])
    item_sets = runner.load_ranks("toy", "mult-vae-mddm/demo/seed1", tmp_path)
    discount = 1 / np.log2(np.arange(10) + 2)
    expected = [
        (discount[0] + discount[5]) / (discount[0] + discount[1]),
        discount[9],
        (discount[2] + discount[3] + discount[4]) / (discount[0] + discount[1] + discount[2]),
    ]
    assert tables.ndcg_at(item_sets, 10).tolist() == pytest.approx(expected)
    # the mean over users is the run's NDCG@10 as training.metrics computes it from ranked lists
    for user_ranks in (ranks, item_sets):
        ranked, targets = _ranked_lists(user_ranks, width=12)
        mean = ranking_metrics(ranked, targets, ks=(10,))["ndcg@10"]
        assert float(np.mean(tables.ndcg_at(user_ranks, 10))) == pytest.approx(mean)


def _ranked_lists(ranks: np.ndarray, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Ranked item lists (users, width) and held-out items that put each user's targets at ``ranks``."""
    per_user = ranks if ranks.dtype == object else [np.array([r]) for r in ranks]
    longest = max(len(user) for user in per_user)
    ranked = torch.arange(1000, 1000 + width).repeat(len(per_user), 1)  # filler items, never held out
    targets = torch.full((len(per_user), longest), -1)
    for user, user_ranks in enumerate(per_user):
        for position, rank in enumerate(user_ranks):
            targets[user, position] = position
            if 0 <= rank < width:
                ranked[user, rank] = position
    return ranked, targets


def _row(method, seed, recall10, ndcg10, epochs, seconds, budget="demo"):
    metrics = {f"test/{name}@{k}": 0.0 for name in ("recall", "ndcg") for k in (5, 10, 20)}
    metrics |= {"test/recall@10": recall10, "test/ndcg@10": ndcg10}
    metrics |= {f"test/popularity/{name}@{k}": 0.01 for name in ("recall", "ndcg") for k in (5, 10, 20)}
    row_id = f"{method}/{budget}/seed{seed}"
    return {"id": row_id, "method": method, "seed": seed, "budget": budget, "metrics": metrics,
            "epochs": epochs, "train_seconds": seconds, "protocol": "leave-one-out"}  # fmt: skip


def _write_results(results_dir: Path, rows: list[dict]) -> None:
    (results_dir / "toy.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))


def _ranks(results_dir: Path, row_id: str, ranks: list[int]) -> None:
    path = results_dir / "ranks" / "toy" / (row_id.replace("/", "__") + ".json.gz")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(json.dumps({"users": list(range(len(ranks))), "ranks": ranks}).encode()))


def test_table_renderer_on_a_hand_made_results_file(tmp_path):
    rows = [
        _row("tiger", 1, 0.10, 0.05, 4, 60),
        _row("tiger", 2, 0.20, 0.07, 6, 120),
        _row("sasrec", 1, 0.30, 0.10, 100, 600),
        _row("sasrec", 2, 0.30, 0.12, 120, 600),
        _row("tiger", 1, 0.99, 0.99, 20, 600, budget="converged"),  # another budget: not in this table
    ]
    for row, machine in zip(rows, ["box A", "box A", "box B", "box A", "box C"], strict=True):
        row["machine"] = machine
    _write_results(tmp_path, rows)
    # per-user ranks: TIGER hits user 0 only (rank 50 is past 10), SASRec hits all three users
    for seed in (1, 2):
        _ranks(tmp_path, f"tiger/demo/seed{seed}", [0, 50, -1])
        _ranks(tmp_path, f"sasrec/demo/seed{seed}", [3, 9, 1])
    table = tables.render_table(runner.read_results(tmp_path / "toy.jsonl"), "toy", "demo", results_dir=tmp_path)
    lines = table.splitlines()
    assert lines[0].startswith("| method | seeds | R@5 | R@10 | R@20 | N@5 | N@10 | N@20 | R@10 vs tiger | p (R@10)")
    assert lines[2] == "| popularity | - | " + " | ".join(["0.0100"] * 6) + " | | | | | | |"
    # sasrec: R@10 mean 0.30, std 0; N@10 mean 0.11, sample std 0.0141; +100% over TIGER's 0.15;
    # per-user hit differences (1-1, 1-0, 1-0) -> two non-zero (+1, +1): exact p = 2/4.
    # NDCG@10: +83.3% over TIGER's 0.06; per user 1/log2(5) - 1, 1/log2(11), 1/log2(3) = -0.569, 0.289, 0.631:
    # of the 8 sign flips only the two that give |sum| 0.228 fall short of the observed 0.351, p = 6/8
    sasrec = next(line for line in lines if line.startswith("| sasrec"))
    assert sasrec == (
        "| sasrec | 1, 2 | 0.0000 ± 0.0000 | 0.3000 ± 0.0000 | 0.0000 ± 0.0000 | 0.0000 ± 0.0000 | 0.1100 ± 0.0141 "
        "| 0.0000 ± 0.0000 | +100.0% | 0.500 | +83.3% | 0.750 | 110.0 | 10.0 |"
    )
    tiger = next(line for line in lines if line.startswith("| tiger"))
    assert "| 0.1500 ± 0.0707 |" in tiger and tiger.endswith("|  |  |  |  | 5.0 | 1.5 |")
    assert lines[-1] == "Runs measured on: box A (3); box B (1)."  # the table's 4 runs, not the other budget's


def test_item_set_rows_get_a_paired_test_against_mult_vae_from_their_per_item_ranks(tmp_path):
    rows = [_row("mult-vae", 1, 0.39, 0.2, 30, 60), _row("mult-vae-mddm", 1, 1.0, 0.3, 30, 60)]
    for row in rows:
        row["protocol"] = "item-sets"
    _write_results(tmp_path, rows)
    _ranks(tmp_path, "mult-vae/demo/seed1", [[0, 15], [-1], [2, 3, 40]])  # Recall@10 per user: 1/2, 0, 2/3
    _ranks(tmp_path, "mult-vae-mddm/demo/seed1", [[0, 5], [9], [2, 3, 4]])  # 1, 1, 1
    rows = runner.read_results(tmp_path / "toy.jsonl")
    table = tables.render_table(rows, "toy", "demo", protocol="item-sets", results_dir=tmp_path)
    mddm = next(line for line in table.splitlines() if line.startswith("| mult-vae-mddm"))
    # differences 1/2, 1, 1/3 all positive: only the all-plus and all-minus flips reach |sum| 11/6, p = 2/8;
    # NDCG@10 (0.3 against 0.2, +50%) per user is higher for all three users too (see the ndcg_at test): p = 2/8
    assert mddm.endswith("| +156.4% | 0.250 | +50.0% | 0.250 | 30.0 | 1.0 |")


def test_a_block_can_compare_every_row_with_two_baselines(tmp_path):
    rows = [
        _row("tiger", 1, 0.10, 0.05, 4, 60),
        _row("sasrec", 1, 0.40, 0.10, 9, 60),
        _row("letter", 1, 0.20, 0.1, 4, 60),
    ]
    _write_results(tmp_path, rows)
    _ranks(tmp_path, "tiger/demo/seed1", [0, 50, -1])  # hits user 0
    _ranks(tmp_path, "sasrec/demo/seed1", [3, 9, 1])  # hits users 0, 1, 2
    _ranks(tmp_path, "letter/demo/seed1", [1, 2, 30])  # hits users 0, 1
    text = "<!-- results:toy:demo:leave-one-out:tiger,letter,sasrec:tiger,sasrec -->\n<!-- /results -->\n"
    lines = tables.render_readme(text, results_dir=tmp_path).splitlines()
    assert lines[1].endswith(
        "| R@10 vs tiger | p (R@10) | N@10 vs tiger | p (N@10) "
        "| R@10 vs sasrec | p vs sasrec | N@10 vs sasrec | p (N@10) vs sasrec | epochs | train min |"
    )
    assert lines[3].endswith(" |" * 11)  # popularity: ten empty cells after its metrics
    # letter: 0.20 is +100% over TIGER's 0.10 (hit differences 0, +1, 0: exact p 2/2) and -50% against SASRec's
    # 0.40 (differences 0, 0, -1: p 1). NDCG@10: per user 1/log2(3) - 1, 1/log2(4), 0 against TIGER (two non-zero
    # differences of opposite sign, every flip at least as far from zero: p 1); level with SASRec's 0.10 (+0.0%).
    letter = next(line for line in lines if line.startswith("| letter"))
    assert letter.endswith("| +100.0% | 1.000 | +100.0% | 1.000 | -50.0% | 1.000 | +0.0% | 1.000 | 4.0 | 1.0 |")
    sasrec = next(line for line in lines if line.startswith("| sasrec"))
    assert sasrec.endswith("| +300.0% | 0.500 | +100.0% | 0.750 |  |  |  |  | 9.0 | 1.0 |")  # not against itself


def test_render_readme_replaces_only_the_marked_blocks(tmp_path):
    (tmp_path / "toy.jsonl").write_text(json.dumps(_row("tiger", 1, 0.1, 0.05, 4, 60)) + "\n")
    text = "intro\n<!-- results:toy:demo -->\nstale table\n<!-- /results -->\noutro\n"
    rendered = tables.render_readme(text, results_dir=tmp_path)
    assert rendered.startswith("intro\n<!-- results:toy:demo -->\n| method |")
    assert "stale" not in rendered and rendered.endswith("<!-- /results -->\noutro\n")
    assert tables.render_readme(rendered, results_dir=tmp_path) == rendered  # a fixpoint


def test_a_grid_skips_finished_runs_and_resumes_after_an_interruption(tmp_path, monkeypatch):
    monkeypatch.setitem(grids.GRIDS, "toy", [grids.GridRun("configs/toy-a.yaml", "toy")])
    trained: list[str] = []
    restarts: dict[int, str] = {}

    def fake_train(command):  # writes what train.py writes; the harness logic is what is under test
        output_dir = Path(next(arg.split("=", 1)[1] for arg in command if arg.startswith("output_dir=")))
        seed = int(next(arg.split("=", 1)[1] for arg in command if arg.startswith("seed=")))
        restarts[seed] = " ".join(arg for arg in command if arg.startswith("--") or "checkpoint-" in arg)
        if seed == 2 and not trained.count("interrupted"):
            trained.append("interrupted")
            for step in (3, 6, 9):  # checkpoints 3 and 6 are complete, 9 was being written
                (output_dir / "checkpoints" / f"checkpoint-{step}").mkdir(parents=True)
                if step < 9:
                    (output_dir / "checkpoints" / f"checkpoint-{step}" / "trainer_state.json").write_text("{}")
            raise KeyboardInterrupt  # the session ends during the second run
        output_dir.mkdir(parents=True, exist_ok=True)
        metrics = {"run/method": "tiger", "test/recall@10": 0.1 * seed, "train/epochs": 4, "train/seconds": 1.0}
        (output_dir / "metrics.json").write_text(json.dumps(metrics))
        (output_dir / "test_ranks.json").write_text(json.dumps({"users": [0, 1], "ranks": [0, -1]}))
        trained.append(f"seed{seed}")

    kwargs = dict(runs_dir=tmp_path / "runs", results_dir=tmp_path / "results", train=fake_train)
    with pytest.raises(KeyboardInterrupt):
        runner.run_grid("toy", [1, 2, 3], "demo", **kwargs)
    rows = runner.read_results(tmp_path / "results" / "toy.jsonl")
    assert [row["id"] for row in rows] == ["toy-a/demo/seed1"]  # the finished run landed before the interruption
    halted = tmp_path / "runs" / "toy" / "toy-a" / "demo" / "seed2"
    last_complete = str(halted / "checkpoints" / "checkpoint-6")  # not the half-written checkpoint-9
    assert runner.interrupted_checkpoint(halted) == last_complete
    assert runner.run_grid("toy", [1, 2, 3], "demo", **kwargs) == 2  # seed 1 is not re-run
    assert trained == ["seed1", "interrupted", "seed2", "seed3"]
    # the interrupted run continued from its last complete checkpoint; the others started clean
    resumed = f"--config --resume_from_checkpoint {last_complete}"  # named: train.py alone would take checkpoint-9
    assert restarts == {1: "--config --overwrite_output_dir", 2: resumed, 3: "--config --overwrite_output_dir"}
    assert runner.interrupted_checkpoint(halted) is None  # finished now
    rows = runner.read_results(tmp_path / "results" / "toy.jsonl")
    assert [row["seed"] for row in rows] == [1, 2, 3] and rows[2]["metrics"]["test/recall@10"] == pytest.approx(0.3)
    assert {"recipe", "method", "seed", "budget", "metrics", "epochs", "train_seconds", "machine", "commit"} <= set(
        rows[0]
    )
    assert runner.load_ranks("toy", "toy-a/demo/seed3", tmp_path / "results").tolist() == [0, -1]
    assert runner.run_grid("toy", [1, 2, 3], "demo", **kwargs) == 0


def test_a_run_that_reads_another_runs_codes_names_the_one_of_its_own_seed_and_budget(tmp_path):
    two_stage = next(run for run in grids.GRIDS["scientific-diger-ablations"] if run.variant.startswith("diger-"))
    read: dict[int, list[str]] = {}

    def fake_train(command):
        output_dir = Path(next(arg.split("=", 1)[1] for arg in command if arg.startswith("output_dir=")))
        seed = int(next(arg.split("=", 1)[1] for arg in command if arg.startswith("seed=")))
        read[seed] = [arg.split("=", 1)[1] for arg in command if arg.startswith("quantizer.codes_from=")]
        output_dir.mkdir(parents=True)
        (output_dir / "metrics.json").write_text(json.dumps({"run/method": "tiger", "test/recall@10": 0.1}))
        (output_dir / "test_ranks.json").write_text(json.dumps({"users": [0], "ranks": [0]}))

    kwargs = dict(runs_dir=tmp_path / "runs", results_dir=tmp_path / "results", train=fake_train)
    runner.run_grid("scientific-diger-ablations", [43, 44], "converged", recipes=[two_stage.variant], **kwargs)
    first_stage = tmp_path / "runs" / "scientific" / "scientific-diger-frqud-demo" / "converged"
    assert read == {seed: [f"{first_stage}/seed{seed}/model"] for seed in (43, 44)}
    # overrides without placeholders pass through untouched, YAML braces included
    kept = grids.GridRun("configs/x.yaml", "x", ("training.objectives={ce: 1.0, soda: {weight: 1.0}}",))
    assert kept.resolved_overrides(1, "demo", tmp_path) == ["training.objectives={ce: 1.0, soda: {weight: 1.0}}"]


def test_readme_results_tables_equal_what_the_result_files_render():
    pages = tables.pages_with_tables()
    assert ROOT / "README.md" in pages
    for page, text in pages.items():
        assert tables.render_readme(text) == text, f"{page.name}: run `python benchmarks/quality.py render`"


def test_a_block_can_name_the_methods_it_shows(tmp_path):
    rows = [
        _row("tiger", 1, 0.1, 0.05, 4, 60),
        _row("diger-reference-frqud", 1, 0.2, 0.1, 4, 60),
        _row("sasrec", 1, 0.3, 0.2, 9, 9),
    ]
    _write_results(tmp_path, rows)
    text = "<!-- results:toy:demo:leave-one-out:tiger,diger -->\n<!-- /results -->\n"
    table = tables.render_readme(text, results_dir=tmp_path)
    assert "| tiger |" in table and "| diger-reference-frqud |" in table and "sasrec" not in table


def test_target_ranks_by_hand():
    import torch

    from sidrec.training.stages.results import target_ranks

    ranked = torch.tensor([[4, 2, 7], [1, 3, 5], [0, 9, 8]])
    assert target_ranks(ranked, [7, 1, 6]) == [2, 0, -1]


def test_held_out_ranks_by_hand():
    import torch

    from sidrec.training.stages.results import held_out_ranks

    ranked = torch.tensor([[4, 2, 7], [1, 3, -1], [0, 9, 8]])  # -1: an empty slot, never a match
    assert held_out_ranks(ranked, [[7, 4], [5, 3], [6]]) == [[2, 0], [-1, 1], [-1]]


def test_codes_table_shows_final_codes_and_churn_and_variants_get_their_own_rows():
    def row(method, seed, variant="", **metrics):
        return {"method": method, "variant": variant, "seed": seed, "budget": "demo", "metrics": metrics}

    fitted = {"codes/level0/usage": 0.5, "codes/collision_rate": 0.2}
    moved = {**fitted, "codes/final/level0/usage": 1.0, "codes/final/collision_rate": 0.3}
    rows = [
        row("tiger", 1, **fitted),
        row("diger-end-to-end-frqud", 1, **moved, **{"codes/final/churn_from_start/level0": 0.1}),
        row("diger-end-to-end-frqud", 2, **moved, **{"codes/final/churn_from_start/level0": 0.3}),
        row("diger-end-to-end-frqud", 1, "alternate", **moved, **{"codes/final/churn_from_start/level0": 0.0}),
        row("sasrec", 1, **{"test/recall@10": 0.3}),  # no semantic IDs: not in this table
    ]
    lines = tables.render_codes_table(rows, "demo").splitlines()
    assert lines[0] == "| method | seeds | level0 usage | collisions | churn level0 |"
    assert lines[2:] == [
        "| diger-end-to-end-frqud | 1, 2 | 100.0% | 30.0% | 20.0% |",
        "| diger-end-to-end-frqud [alternate] | 1 | 100.0% | 30.0% | 0.0% |",
        "| tiger | 1 | 50.0% | 20.0% | - |",
    ]


def recording_train(method: str):
    """A stand-in for ``train.py`` that records each command and writes a finished run's ``metrics.json``."""
    commands: list[list[str]] = []

    def train(command):
        commands.append(command)
        output_dir = Path(next(arg.split("=", 1)[1] for arg in command if arg.startswith("output_dir=")))
        output_dir.mkdir(parents=True)
        (output_dir / "metrics.json").write_text(json.dumps({"run/method": method}))

    return commands, train


def test_ablation_variants_have_their_own_run_ids_and_overrides(tmp_path):
    runs = grids.GRIDS["scientific-diger-ablations"]
    ids = {grids.run_id(run, 42, "demo") for run in runs}
    assert len(ids) == len(runs) and "scientific-diger-frqud-demo+alternate/demo/seed42" in ids
    commands, fake_train = recording_train("diger-end-to-end-frqud")
    kwargs = dict(runs_dir=tmp_path / "runs", results_dir=tmp_path / "results", train=fake_train)
    assert runner.run_grid("scientific-diger-ablations", [42], "demo", recipes=["alternate"], **kwargs) == 1
    assert "joint.alternate=true" in commands[0] and "configs/scientific-diger-frqud-demo.yaml" in commands[0]
    (row,) = runner.read_results(tmp_path / "results" / "scientific.jsonl")
    assert row["variant"] == "alternate" and tables.row_label(row) == "diger-end-to-end-frqud [alternate]"


def test_smoke_overrides_go_last_are_recorded_and_never_reach_the_committed_results(tmp_path):
    commands, fake_train = recording_train("mult-vae")
    smoke = ("data.max_users=300", "training.epochs=1")
    with pytest.raises(ValueError, match="--results-dir"):
        runner.run_grid("scientific-mult-vae", [42], "demo", train=fake_train, extra_overrides=smoke)
    assert commands == []  # refused before anything trained
    kwargs = dict(runs_dir=tmp_path / "runs", results_dir=tmp_path / "results", train=fake_train)
    assert (
        runner.run_grid(
            "scientific-mult-vae", [42], "demo", recipes=["scientific-mult-vae-base"], extra_overrides=smoke, **kwargs
        )
        == 1
    )
    assert commands[0][-3:] == [*smoke, "--overwrite_output_dir"]  # after the recipe's and the budget's
    (row,) = runner.read_results(tmp_path / "results" / "scientific.jsonl")
    assert row["extra_overrides"] == list(smoke) and row["budget_overrides"] == []


def test_merge_adds_only_new_rows_with_their_ranks_and_never_replaces_a_finished_run(tmp_path):
    ours, theirs = tmp_path / "results", tmp_path / "gpu" / "results"

    def row(run_id: str, recall: float) -> dict:
        return {"id": run_id, "metrics": {"test/recall@10": recall}}

    ours.mkdir(parents=True)
    (ours / "toy.jsonl").write_text(json.dumps(row("a/demo/seed1", 0.1)) + "\n")
    (theirs / "ranks" / "toy").mkdir(parents=True)
    lines = [row("a/demo/seed1", 0.9), row("a/converged/seed1", 0.2), row("b/demo/seed2", 0.3)]
    (theirs / "toy.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    (theirs / "ranks" / "toy" / "a__converged__seed1.json.gz").write_bytes(gzip.compress(b'{"ranks": [0, 4]}'))
    (theirs / "other.jsonl").write_text(json.dumps(row("c/demo/seed3", 0.4)) + "\n")

    assert runner.merge_results(theirs, ours) == ["c/demo/seed3", "a/converged/seed1", "b/demo/seed2"]
    merged = runner.read_results(ours / "toy.jsonl")
    assert [(r["id"], r["metrics"]["test/recall@10"]) for r in merged] == [
        ("a/demo/seed1", 0.1),  # the finished run kept its own numbers
        ("a/converged/seed1", 0.2),
        ("b/demo/seed2", 0.3),  # no ranks file: the row lands without one
    ]
    assert runner.load_ranks("toy", "a/converged/seed1", ours).tolist() == [0, 4]
    assert runner.load_ranks("toy", "b/demo/seed2", ours) is None
    assert runner.merge_results(theirs, ours) == []  # a second merge adds nothing
    with pytest.raises(FileNotFoundError, match="no <dataset>.jsonl"):
        runner.merge_results(tmp_path / "nothing-here", ours)


def test_speed_blocks_render_from_their_json_files(tmp_path):
    """``<!-- speed:... -->`` blocks: the pipeline table leaves setup stages out and names a failed size."""
    result = {
        "items": 1000,
        "users": 1000,
        "interactions": 10000,
        "stages": [
            {"stage": "write synthetic Parquet (setup)", "seconds": 0.5, "peak_mb": 300},
            {"stage": "read", "seconds": 1.25, "peak_mb": 1200, "note": "ten per user"},
        ],
    }
    failed = {"items": 10**7, "failed": ["MemoryError"]}
    (tmp_path / "scale_pipeline_toy.json").write_text(json.dumps([result, failed]))
    text = "a\n<!-- speed:scale_pipeline_toy -->\nold\n<!-- /speed -->\nb\n"
    rendered = tables.render_readme(text, results_dir=tmp_path)
    assert rendered == (
        "a\n<!-- speed:scale_pipeline_toy -->\n"
        "| stage | 1,000 items, 0.01M interactions: s / peak MB |\n| --- | ---: |\n| read | 1.25 / 1,200 |\n\n"
        "- 1,000 items, read: ten per user\n- 10,000,000 items: failed (MemoryError)\n<!-- /speed -->\nb\n"
    )
    (tmp_path / "other.json").write_text("{}")
    with pytest.raises(ValueError, match="no table renderer"):
        tables.render_readme("<!-- speed:other -->\n<!-- /speed -->", results_dir=tmp_path)


def test_selection_table_marks_the_setting_of_best_validation_not_best_test():
    def row(variant, seed, validation, recall10, method="dmrec-t5"):
        metrics = {"validation/best_ndcg@10": validation, "test/recall@10": recall10, "test/ndcg@10": recall10 / 2}
        return {"method": method, "variant": variant, "seed": seed, "budget": "demo", "metrics": metrics}

    tiger = [row("", 1, 0.030, 0.050, "tiger"), row("", 2, 0.030, 0.070, "tiger")]  # mean R@10 0.06
    rows = [
        row("", 1, 0.027, 0.054),  # best validation (0.027), weaker test than weight-0.25
        row("weight-0.25", 1, 0.022, 0.066),
    ]
    for row, machine in zip([*tiger, *rows], ["box A", "box A", "box B", "box B"], strict=True):
        row["machine"] = machine
    *lines, _, machines = tables.render_selection_table(rows, "demo", tiger).splitlines()
    assert machines == "Runs measured on: box A (2); box B (2)."  # floats differ between CPUs: say which ran what
    assert lines[0] == "| run | seeds | validation N@10 | test R@10 | test N@10 | R@10 vs tiger | chosen |"
    assert lines[2:] == [
        "| tiger | 1, 2 | 0.0300 ± 0.0000 | 0.0600 ± 0.0141 | 0.0300 ± 0.0071 |  |  |",
        "| dmrec-t5 | 1 | 0.0270 | 0.0540 | 0.0270 | -10.0% | yes |",  # 0.054 / 0.06 - 1
        "| dmrec-t5 [weight-0.25] | 1 | 0.0220 | 0.0660 | 0.0330 | +10.0% |  |",
    ]


def test_every_run_id_names_one_recipe_and_one_set_of_overrides_across_all_grids():
    """Two grids may share a run (the same id is then the same training); never one id for two trainings."""
    seen: dict[tuple[str, str], tuple] = {}
    for runs in grids.GRIDS.values():
        for run in runs:
            key = (run.dataset, grids.run_id(run, 42, "demo"))
            assert seen.setdefault(key, (run.recipe, run.overrides)) == (run.recipe, run.overrides), key


@pytest.mark.parametrize(
    "quantizer, expected",
    [
        ({"epochs": 300}, "rqvae-300"),
        ({"epochs": 500, "restart_dead_codes": True, "balance_last_level": True}, "rqvae-500+restarts+sinkhorn-last"),
        ({"method": "rq_kmeans", "epochs": 300}, "rq-kmeans"),
        ({"codes_from": "runs/x/model"}, "codes-from-run"),
    ],
)
def test_every_row_names_its_code_fit(tmp_path, quantizer, expected):
    """Rows on different code fits are told apart: each carries the label of the fit its run's recipe made."""
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump({"name": "r", "quantizer": quantizer}))
    assert runner.code_fit(tmp_path) == expected
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump({"name": "r", "sasrec": {"enabled": True}}))
    assert runner.code_fit(tmp_path) is None


def test_headline_table_keeps_the_named_order_in_eight_columns(tmp_path):
    """The README's tables: exact labels in the order given, R/N@10 and their change against TIGER and SASRec."""
    rows = [
        _row("sasrec", 1, 0.30, 0.10, 100, 600),
        _row("tiger", 1, 0.10, 0.05, 4, 60),
        _row("tiger", 2, 0.20, 0.07, 6, 120),
        _row("tiger-cf", 1, 0.15, 0.06, 4, 60),  # a prefix match of "tiger": must not join the tiger row
    ]
    for row in rows:
        row["machine"] = "box A"
    _write_results(tmp_path, rows)
    for seed in (1, 2):
        _ranks(tmp_path, f"tiger/demo/seed{seed}", [0, 50, -1])
    _ranks(tmp_path, "sasrec/demo/seed1", [3, 9, 1])
    table = tables.render_headline_table(
        runner.read_results(tmp_path / "toy.jsonl"), "toy", "demo", ["tiger", "missing", "sasrec"], tmp_path
    )
    lines = table.splitlines()
    assert (
        lines[0] == "| method | seeds | R@10 | N@10 | R@10 vs tiger | N@10 vs tiger | R@10 vs sasrec | N@10 vs sasrec |"
    )
    assert [line.split(" | ")[0] for line in lines[2:4]] == ["| tiger", "| sasrec"]  # the order given, no tiger-cf
    # TIGER: R@10 0.15 vs 0.30 (-50.0%), N@10 0.06 vs 0.10 (-40.0%); per-user hits (1, 0, 0) vs (1, 1, 1): p = 2/4
    assert (
        lines[2] == "| tiger | 1, 2 | 0.1500 ± 0.0707 | 0.0600 ± 0.0141 |  |  | -50.0% (p 0.500) | -40.0% (p 0.750) |"
    )
    assert lines[3].startswith("| sasrec | 1 | 0.3000 | 0.1000 | +100.0% (p 0.500) | +66.7% (p 0.750) |")
    assert lines[-1] == "Runs measured on: box A (3)."
