"""``SIDTrainer``: the Hugging Face ``Trainer`` with recipe-named objectives and ranking evaluation."""

from __future__ import annotations

from collections import defaultdict

import torch
from accelerate.utils import gather_object
from transformers import Trainer

from .evaluation import rank_users
from .metrics import ranking_metrics
from .objectives import Objective


class SIDTrainer(Trainer):
    """A ``Trainer`` whose loss is a weighted sum of objectives and whose evaluation is ranking.

    ``evaluate`` runs trie-constrained beam search over the full catalogue for each evaluation user
    and reports Recall/NDCG@k, so ``metric_for_best_model="ndcg@10"``, ``load_best_model_at_end``
    and ``EarlyStoppingCallback`` work unchanged. Under ``accelerate launch`` the users are split
    between processes and the rankings gathered.

    Args:
        objectives: name -> :class:`~sidrec.training.objectives.Objective` (see ``build_objectives``).
        ranking_ks: cut-offs for Recall/NDCG.
        num_beams: beam width of evaluation (TIGER: 20).
        max_eval_users: evaluate only the first users of the evaluation split during training.
    """

    def __init__(
        self,
        *args,
        objectives: dict[str, Objective],
        ranking_ks: tuple[int, ...] = (5, 10, 20),
        num_beams: int = 20,
        max_eval_users: int | None = None,
        **kwargs,
    ):
        super().__init__(*args, **kwargs)
        self.objectives = objectives
        self.ranking_ks = tuple(ranking_ks)
        self.num_beams = num_beams
        self.max_eval_users = max_eval_users
        self._figures: dict[str, list[float]] = defaultdict(list)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        inputs = dict(inputs)
        inputs.pop("target_items", None)
        outputs = model(**inputs)
        total = None
        for name, objective in self.objectives.items():
            value, figures = objective(model, inputs, outputs)
            total = objective.weight * value if total is None else total + objective.weight * value
            if model.training:
                self._figures[f"loss_{name}"].append(value.detach().item())
                for key, figure in figures.items():
                    self._figures[key].append(float(figure))
        return (total, outputs) if return_outputs else total

    def log(self, logs: dict[str, float], *args, **kwargs) -> None:
        if "loss" in logs and self._figures:  # training logs carry the per-objective means
            logs.update({key: sum(values) / len(values) for key, values in self._figures.items()})
            self._figures.clear()
        super().log(logs, *args, **kwargs)

    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix: str = "eval") -> dict[str, float]:
        dataset = eval_dataset if eval_dataset is not None else self.eval_dataset
        if dataset is None:
            raise ValueError("SIDTrainer.evaluate needs an evaluation split (eval_dataset)")
        if self.max_eval_users is not None and metric_key_prefix == "eval":
            dataset = dataset.select(range(min(self.max_eval_users, len(dataset))))
        model = self.accelerator.unwrap_model(self.model)
        columns = dataset.to_dict()
        shard = list(range(len(dataset)))
        with self.accelerator.split_between_processes(shard) as mine:
            ranked = rank_users(
                model,
                self.processing_class,
                [columns["history"][i] for i in mine],
                users=[columns["user"][i] for i in mine] if "user" in columns else None,
                top_k=max(self.ranking_ks),
                num_beams=self.num_beams,
                batch_size=self.args.per_device_eval_batch_size,
                progress=self.is_local_process_zero() and not self.args.disable_tqdm,
                description=metric_key_prefix,
            )
        if self.accelerator.num_processes > 1:
            ranked = torch.cat(gather_object([ranked]))
        metrics = ranking_metrics(ranked, torch.tensor(columns["target"]), self.ranking_ks)
        metrics = {f"{metric_key_prefix}_{key}": value for key, value in metrics.items()}
        metrics[f"{metric_key_prefix}_users"] = len(dataset)
        self.log(dict(metrics))  # Trainer.log adds `epoch` to the dict it is given
        if metric_key_prefix == "eval":  # a final test evaluation must not feed early stopping
            self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, metrics)
        return metrics
