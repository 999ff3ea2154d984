"""``SIDTrainer``: the Hugging Face ``Trainer`` with recipe-named objectives and ranking evaluation."""

from __future__ import annotations

import contextlib
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import torch
from accelerate.utils import gather_object
from transformers import Trainer

from .cpu_step import keep_freed_memory, restore_freed_memory, skip_autocast_round_trip
from .fast_dropout import use_fast_dropout
from .objectives import Objective
from .ranking import GenerativeRanker, Ranker, score_rankings

ITEM_COLUMNS = ("item_index", "target_items", "negative_items")  # collator columns in item indices, not token ids


class ObjectiveTrainer(Trainer):
    """A ``Trainer`` whose loss is the weighted sum of the objectives a recipe names.

    Each objective's mean value (``loss_<name>``) and figures are added to the training logs.

    Args:
        objectives: name -> :class:`~sidrec.training.objectives.Objective` (see ``build_objectives``).
        learning_rates: parameter-name prefix -> learning rate (e.g. ``{"quantizer.": 1e-5}`` for a
            trainable tokenizer beside a 1e-3 recommender); other parameters use ``args.learning_rate``.
        deterministic: PyTorch's deterministic algorithms while training (see :meth:`train`).
        fast_dropout: draw the model's dropout masks with numpy's SFC64 (``training/fast_dropout.py``).
    """

    def __init__(
        self,
        *args,
        objectives: dict[str, Objective],
        learning_rates: dict[str, float] | None = None,
        deterministic: bool = True,
        fast_dropout: bool = False,
        **kwargs,
    ):
        self.learning_rates = dict(learning_rates or {})
        super().__init__(*args, **kwargs)
        self.objectives = objectives
        self.deterministic = deterministic
        skip_autocast_round_trip(self.model)  # the same numbers, fewer copies of T5's largest activation
        if fast_dropout:
            use_fast_dropout(self.model)
        # Per-step figures stay detached tensors until a logging step: a `.item()` per step would stall a GPU.
        self._figures: dict[str, list[torch.Tensor]] = defaultdict(list)

    def train(self, *args, **kwargs):
        """``Trainer.train`` with PyTorch's deterministic algorithms on (``deterministic=True``) and freed memory
        kept for reuse (:func:`~sidrec.training.cpu_step.keep_freed_memory`), both restored afterwards.

        With two CPU threads the joint DIGER/SODA step is not reproducible otherwise: the backward of its
        code-embedding gather accumulates rows in a thread-dependent order (measured: the gradients of
        two identical steps differ by ~1e-9, and a one-epoch run moves Recall@10 by 10%). The switch is
        scoped to training, so importing or using sidrec changes no process-wide setting.

        The switch also turns on ``torch.utils.deterministic.fill_uninitialized_memory``, a debugging aid that
        writes every new tensor's memory before use; no correct operation reads it, so results do not depend
        on it, but it cost 30% of a TIGER-size bf16 step on CPU (a profile of the Beauty recipe: 1,350
        ``fill_`` calls a step). It is kept off while training.
        """
        with contextlib.ExitStack() as restore:
            if keep_freed_memory():
                restore.callback(restore_freed_memory)
            if self.deterministic:
                settings = torch.utils.deterministic
                restore.callback(setattr, settings, "fill_uninitialized_memory", settings.fill_uninitialized_memory)
                restore.callback(
                    torch.use_deterministic_algorithms,
                    torch.are_deterministic_algorithms_enabled(),
                    warn_only=torch.is_deterministic_algorithms_warn_only_enabled(),
                )
                torch.use_deterministic_algorithms(True, warn_only=True)
                settings.fill_uninitialized_memory = False
            return super().train(*args, **kwargs)

    def create_optimizer(self, model=None):
        """The stock optimizer, with one parameter group per ``learning_rates`` prefix (x decay / no decay)."""
        if self.optimizer is not None or not self.learning_rates:
            return super().create_optimizer(model)
        model = self.model if model is None else model
        names = [name for name, _ in model.named_parameters()]
        unknown = [prefix for prefix in self.learning_rates if not any(n.startswith(prefix) for n in names)]
        if unknown:
            raise ValueError(
                f"learning_rates prefixes {unknown} match no parameter; parameter names start with "
                f"{sorted({n.split('.')[0] + '.' for n in names})}"
            )
        decay = set(self.get_decay_parameter_names(model))
        groups: dict[tuple[str, float, float], list[torch.nn.Parameter]] = {}
        for name, param in model.named_parameters():
            if not param.requires_grad:
                continue
            prefix = next((p for p in self.learning_rates if name.startswith(p)), "")
            learning_rate = self.learning_rates.get(prefix, self.args.learning_rate)
            weight_decay = self.args.weight_decay if name in decay else 0.0
            groups.setdefault((prefix, learning_rate, weight_decay), []).append(param)
        optimizer_cls, optimizer_kwargs = self.get_optimizer_cls_and_kwargs(self.args, model)
        self.optimizer = optimizer_cls(
            [
                {"params": params, "lr": lr, "weight_decay": wd, "name": prefix or "default"}
                for (prefix, lr, wd), params in groups.items()
            ],
            **optimizer_kwargs,
        )
        return self.optimizer

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        # Item-index columns reach the model only when it reads them (the joint DIGER model does);
        # every objective sees the whole batch.
        accepted = getattr(self.accelerator.unwrap_model(model), "item_inputs", ())
        outputs = model(**{k: v for k, v in inputs.items() if k not in ITEM_COLUMNS or k in accepted})
        total = None
        for name, objective in self.objectives.items():
            value, figures = objective(model, inputs, outputs)
            total = objective.weight * value if total is None else total + objective.weight * value
            if model.training:
                self._figures[f"loss_{name}"].append(value.detach())
                for key, figure in figures.items():
                    self._figures[key].append(torch.as_tensor(figure).detach())
        return (total, outputs) if return_outputs else total

    def log(self, logs: dict[str, float], *args, **kwargs) -> None:
        if "loss" in logs and self._figures:  # training logs carry the per-objective means (one sync per log)
            logs.update({key: torch.stack(values).float().mean().item() for key, values in self._figures.items()})
            self._figures.clear()
        decay = getattr(self.accelerator.unwrap_model(self.model), "uncertainty_decay", None)
        if "loss" in logs and decay is not None:
            logs.update({f"noise/{key}": value for key, value in decay.figures().items()})
        super().log(logs, *args, **kwargs)


class SIDTrainer(ObjectiveTrainer):
    """An :class:`ObjectiveTrainer` whose evaluation ranks the full catalogue for every evaluation user.

    ``evaluate`` asks a :class:`~sidrec.training.ranking.Ranker` for each user's top items and reports
    Recall/NDCG@k against the split's targets, so ``metric_for_best_model="ndcg@10"``,
    ``load_best_model_at_end`` and ``EarlyStoppingCallback`` work unchanged. The default ranker is
    trie-constrained beam search with the trainer's tokenizer (SID-T5 and its variants); any other
    model passes ``ranker`` (Mult-VAE: :class:`~sidrec.training.ranking.ItemSetRanker`). Under
    ``accelerate launch`` the users are split between processes and the rankings gathered.

    Args (besides :class:`ObjectiveTrainer`'s):
        ranking_ks: cut-offs for Recall/NDCG.
        num_beams: beam width of the default generative ranker (TIGER: 20).
        max_eval_users: evaluate only the first users of the evaluation split during training.
        ranker: ``model -> Ranker``, called at every evaluation with the unwrapped model.
    """

    def __init__(
        self,
        *args,
        ranking_ks: tuple[int, ...] = (5, 10, 20),
        num_beams: int = 20,
        max_eval_users: int | None = None,
        ranker: Callable[[Any], Ranker] | None = None,
        **kwargs,
    ):
        super().__init__(*args, **kwargs)
        self.ranking_ks = tuple(ranking_ks)
        self.num_beams = num_beams
        self.max_eval_users = max_eval_users
        self.ranker = ranker

    def _ranker(self, model, description: str) -> Ranker:
        if self.ranker is not None:
            return self.ranker(model)
        progress = self.is_local_process_zero() and not self.args.disable_tqdm
        batch_size = self.args.per_device_eval_batch_size
        return GenerativeRanker(
            model, self.processing_class, self.num_beams, batch_size, progress=progress, description=description
        )

    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix: str = "eval") -> dict[str, float]:
        dataset = eval_dataset if eval_dataset is not None else self.eval_dataset
        if dataset is None:
            raise ValueError("SIDTrainer.evaluate needs an evaluation split (eval_dataset)")
        if self.max_eval_users is not None and metric_key_prefix == "eval":
            dataset = dataset.select(range(min(self.max_eval_users, len(dataset))))
        model = self.accelerator.unwrap_model(self.model)
        ranker = self._ranker(model, metric_key_prefix)
        rows = dataset.to_dict()
        with self.accelerator.split_between_processes(list(range(len(dataset)))) as mine:
            ranked = ranker.rank({key: [values[i] for i in mine] for key, values in rows.items()}, max(self.ranking_ks))
            ranked = ranked.items
        if self.accelerator.num_processes > 1:
            ranked = torch.cat(gather_object([ranked]))
        self.last_rankings = ranked  # (users, max k): the run saves each test user's target rank from it
        metrics = score_rankings(ranked, rows, self.ranking_ks, getattr(model.config, "num_items", None))
        metrics = {f"{metric_key_prefix}_{key}": value for key, value in metrics.items()}
        metrics[f"{metric_key_prefix}_users"] = len(dataset)
        self.log(dict(metrics))  # Trainer.log adds `epoch` to the dict it is given
        if metric_key_prefix == "eval":  # a final test evaluation must not feed early stopping
            self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, metrics)
        return metrics
