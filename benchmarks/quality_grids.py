"""The grid catalogue of the results harness: which recipes, variants and budgets a named grid trains.

A grid is a list of runs (a recipe, the results file its rows go to, and for an ablation the overrides and the
variant name that tells its rows apart); ``python benchmarks/quality.py run <grid>`` trains each run at every
seed asked for. Budgets are the overrides that size a run the same way for every method (``quality.py --help``
says why each exists). Adding a grid or an ablation is an edit here and nowhere else; ``quality_runner.py``
trains what this module names and ``quality_tables.py`` renders the rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

BUDGETS = {
    "demo": [],
    "converged": ["training.epochs=20", "training.early_stopping_patience=20"],
    "long": ["training.epochs=200", "training.early_stopping_patience=10"],
    # The recipe's own schedule and stopping rule (the paper-size reproductions state theirs in the recipe).
    "paper": [],
}


@dataclass(frozen=True)
class GridRun:
    """One run of a grid, trained at every seed and budget asked for (the id is ``run_id``'s)."""

    recipe: str  # path under configs/
    dataset: str  # the results file's name
    overrides: tuple[str, ...] = ()
    variant: str = ""  # names an ablation (recipe + overrides) in run ids and tables, e.g. "freeze-codes-2"

    def resolved_overrides(self, seed: int, budget: str, runs_dir: Path) -> list[str]:
        """The overrides with ``{seed}``, ``{budget}`` and ``{runs_dir}`` filled in: a run that reads another
        grid run's output (its codes) names the one of its own seed and budget."""
        values = {"{seed}": str(seed), "{budget}": budget, "{runs_dir}": str(runs_dir)}
        resolved = []
        for override in self.overrides:
            for placeholder, value in values.items():
                override = override.replace(placeholder, value)
            resolved.append(override)
        return resolved


def _sci(name: str) -> GridRun:
    return GridRun(f"configs/scientific-{name}.yaml", "scientific")


def _beauty(name: str) -> GridRun:
    return GridRun(f"configs/beauty-{name}.yaml", "beauty")


def _ablation(name: str, variant: str, *overrides: str) -> GridRun:
    return GridRun(f"configs/scientific-{name}.yaml", "scientific", tuple(overrides), variant)


RESTARTS_SINKHORN = ("quantizer.restart_dead_codes=true", "quantizer.balance_last_level=true")
# bf16 autocast and eager attention: the CPU-speed training settings of the paper-size reproduction.
FAST_TRAINING = ("training.precision=bf16", "model.attn_implementation=eager")
# Ranking without the user's own items, as some published SASRec numbers do (none is ever a test target here).
EXCLUDE_HISTORY = ("evaluation.exclude_history=true",)
NEAREST_CODES = ("joint.sinkhorn_epsilon=0", "joint.logits=calibrated")  # DIGER's best setting here (docs/diger.md)


def _dmrec_weight(weight: str) -> str:
    return f"training.objectives={{ce: 1.0, dmrec: {{strategy: mddm, beta: 0.5, weight: {weight}}}}}"


# One option of DIGER's end-to-end mode at a time, over the FrqUD demo (issue: DIGER that works).
DIGER_ABLATIONS = [
    _ablation("diger-frqud-demo", "warmup-1", "joint.tokenizer_warmup_epochs=1"),
    _ablation("diger-frqud-demo", "freeze-codes-2", "joint.freeze_codes_epoch=2"),
    _ablation("diger-frqud-demo", "alternate", "joint.alternate=true"),
    _ablation("diger-frqud-demo", "hysteresis-1", "joint.code_hysteresis=1.0"),
    _ablation("diger-frqud-demo", "sinkhorn-centred", "joint.logits=centred", "joint.sinkhorn_epsilon=0.003"),
    _ablation("diger-frqud-demo", "codebook-embeddings", "joint.code_embeddings=codebook"),
    # Scale-aware updates: the deep levels' codebooks fixed (their tiny code gaps re-label most items at any step).
    _ablation("diger-frqud-demo", "frozen-levels-1-2", "joint.frozen_code_levels=[1, 2]"),
    _ablation("diger-frqud-demo", "frozen-level-2", "joint.frozen_code_levels=[2]"),
    # ... and with the encoder fixed too, so only the level-0 codebook moves: is deep churn the coarse levels' doing?
    _ablation(
        "diger-frqud-demo",
        "frozen-levels-1-2+frozen-encoder",
        "joint.frozen_code_levels=[1, 2]",
        "joint.frozen_encoder=all",
    ),
    # Why the reference mode loses to TIGER: its balanced starting codes alone (frozen from epoch 0), or
    # its churn alone (nearest codes, no Sinkhorn).
    _ablation("diger-reference-frqud-demo", "frozen-sinkhorn-codes", "joint.freeze_codes_epoch=0"),
    _ablation("diger-reference-frqud-demo", "nearest-codes", *NEAREST_CODES),
    # At the converged budget: is late churn the whole gap to TIGER? The best setting with its codes fixed for
    # the second half of the 20 epochs (ETEGRec's final recommender-only phase).
    _ablation("diger-reference-frqud-demo", "nearest-codes+freeze-10", *NEAREST_CODES, "joint.freeze_codes_epoch=10"),
    # Two-stage DIGER: are the codes the end-to-end FrqUD run ended with better codes than TIGER's, once the
    # recommender no longer pays for their churn? TIGER trained fresh on them (that run of the same seed and
    # budget must have finished: `--recipes scientific-diger-frqud-demo` of the scientific-diger grid).
    *(
        _ablation(
            "tiger-demo",
            f"diger-end-to-end-{strategy}-codes",
            f"quantizer.codes_from={{runs_dir}}/scientific/scientific-diger-{strategy}-demo/{{budget}}/seed{{seed}}/model",
        )
        for strategy in ("frqud", "sdud")
    ),
]


GRIDS: dict[str, list[GridRun]] = {
    "scientific-floor": [
        _sci("sasrec"),
        _sci("tiger-demo"),
        # The same TIGER runs again, to be trained on another machine than the first ones: the demo budget
        # showed the machine alone moving seed 42 by 12% (0.0473 AMD EPYC, 0.0528 Intel Xeon).
        GridRun("configs/scientific-tiger-demo.yaml", "scientific", (), "rerun"),
        # The training speed settings (bf16 autocast, eager attention) against the fp32 rows of the same machine:
        # the same quality within seed noise, or the speed-up is not free.
        GridRun("configs/scientific-tiger-demo.yaml", "scientific", FAST_TRAINING, "bf16-eager"),
        GridRun("configs/scientific-sasrec.yaml", "scientific", EXCLUDE_HISTORY, "exclude-history"),
    ],
    "scientific-methods": [
        _sci("tiger-demo"),
        _sci("tiger-soda-demo"),
        _sci("diger-frqud-demo"),
        _sci("diger-sdud-demo"),
        _sci("diger-frqud-soda-demo"),
        _sci("dmrec-t5-demo"),
    ],
    "scientific-diger": [
        _sci("tiger-demo"),
        _sci("diger-reference-frqud-demo"),
        _sci("diger-reference-sdud-demo"),
        _sci("diger-frqud-demo"),
        _sci("diger-sdud-demo"),
    ],
    "scientific-diger-ablations": DIGER_ABLATIONS,
    # SODA's schedules: over TIGER's frozen codes, tokenizer trained at every step, and alternately (the
    # SODA abstract's schedule: a tokenizer epoch, a recommender epoch, a last epoch on frozen codes).
    "scientific-soda": [
        _sci("tiger-soda-demo"),
        _sci("joint-soda-demo"),
        _ablation("joint-soda-demo", "alternate", "joint.alternate=true", "joint.freeze_codes_epoch=3"),
        # SODA over the best DIGER setting (reference mode, nearest codes): its gradient reaches the codebooks.
        _ablation(
            "diger-reference-frqud-demo",
            "nearest-codes+soda",
            *NEAREST_CODES,
            "training.objectives={ce: 1.0, quantizer: {weight: 1.0, balance: 0.1}, soda: {weight: 1.0}}",
        ),
    ],
    # DMRec-T5's matching weight, chosen on validation NDCG@10 at the demo budget (the recipe holds the choice).
    "scientific-dmrec-t5": [
        _sci("dmrec-t5-demo"),
        *(
            _ablation("dmrec-t5-demo", f"weight-{weight}", _dmrec_weight(weight))
            for weight in ("0.01", "0.25")  # the recipe has 0.0001
        ),
        # The latent token without any matching: is a DMRec-T5 gain the matching's or the extra noisy token's?
        _ablation("dmrec-t5-demo", "weight-0", _dmrec_weight("0")),
    ],
    # Collaborative semantic IDs read one converged SASRec (configs/scientific-sasrec.yaml, seed 42), which
    # the first of them trains into the cache (.cache/sidrec/collaborative/) and the rest reuse.
    "scientific-collaborative": [
        _sci(name)
        for name in (
            "letter-demo",
            "tiger-textcf-demo",
            "tiger-cf-demo",
            "etegrec-demo",
            "tiger-textcf-soda-demo",
            "tiger-cf-soda-demo",  # SODA over the best collaborative row at the converged budget
            "letter-soda-demo",  # SODA over its paper's own backbones
            "etegrec-soda-demo",
        )
    ],
    "scientific-mult-vae": [_sci("mult-vae-base"), _sci("mult-vae-mddm")],
    "beauty-floor": [
        _beauty("sasrec"),
        _beauty("tiger-cpu"),
        # Where SASRec's gap to the published 0.085-0.092 Recall@10 comes from: the public runs read 50 items.
        GridRun("configs/beauty-sasrec.yaml", "beauty", ("data.max_history=50",), "history-50"),
        GridRun("configs/beauty-sasrec.yaml", "beauty", ("sasrec.hidden_size=128",), "hidden-128"),
        # Some published SASRec numbers rank without the user's own items; sidrec keeps them (none is ever a
        # test target here), so this variant reads the same model the way those numbers were read.
        GridRun("configs/beauty-sasrec.yaml", "beauty", EXCLUDE_HISTORY, "exclude-history"),
        # ... and trained as long as the public runs are: patience 20 ran the same recipe to a best epoch of 102.
        GridRun(
            "configs/beauty-sasrec.yaml",
            "beauty",
            (*EXCLUDE_HISTORY, "training.early_stopping_patience=20"),
            "exclude-history+patience-20",
        ),
    ],
    "beauty-mult-vae": [_beauty("mult-vae-base"), _beauty("mult-vae-mddm")],
    # Scientific's best DIGER setting and best collaborative-SID row, one seed each beside Beauty's TIGER.
    "beauty-diger": [
        GridRun("configs/beauty-diger-reference-frqud-cpu.yaml", "beauty", NEAREST_CODES, "nearest-codes")
    ],
    # tiger-cf and SODA over it: Scientific's best collaborative row and its best row over all.
    # Which code fit TIGER ranks best with (issue 34): one seed each at the converged budget to rank the options
    # on validation NDCG@10, then three seeds for the chosen default. The plain fit is scientific-floor's tiger.
    "scientific-code-fits": [
        _ablation("tiger-demo", "restarts", "quantizer.restart_dead_codes=true"),
        _ablation("tiger-demo", "restarts+sinkhorn-last", *RESTARTS_SINKHORN),
        _ablation("tiger-demo", "rq-kmeans", "quantizer.method=rq_kmeans", "quantizer.kmeans_iterations=50"),
    ],
    # TIGER reproduced on the TIGER benchmark: the paper's recommender, trained on CPU to its stopping rule.
    # Then SODA over collaborative codes with the same model and schedule: Beauty's method row on that baseline.
    "beauty-reproduction": [_beauty("tiger"), _beauty("tiger-cf-soda")],
    "beauty-collaborative": [
        _beauty("tiger-cf-cpu"),
        _beauty("tiger-cf-soda-cpu"),
        # TIGER's Beauty row ran on the AMD machine, the collaborative rows on the Intel one: the same TIGER
        # recipe on the machine of the rows it is compared with (`--recipes rerun`) takes the CPU out of it.
        GridRun("configs/beauty-tiger-cpu.yaml", "beauty", (), "rerun"),
    ],
}


def run_id(run: GridRun, seed: int, budget: str) -> str:
    """A run's id in the results file and its folder under the runs directory, e.g.
    ``scientific-diger-frqud-demo+alternate/demo/seed42``: what resuming and skipping a finished run match on."""
    name = Path(run.recipe).stem + (f"+{run.variant}" if run.variant else "")
    return f"{name}/{budget}/seed{seed}"
