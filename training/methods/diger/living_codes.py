"""Living codes: keep the catalogue's semantic IDs in step with a quantizer that trains.

When the tokenizer trains with the recommender (DIGER), an item's nearest codes drift. After every
epoch this callback re-encodes the whole catalogue, renumbers collisions, stores the table in the
model (so checkpoints carry it) and in the tokenizer (which rebuilds its trie), so that evaluation
decodes with the current codes and the next epoch's batches are tokenised with them. It also
records the code statistics, the churn (share of items whose code changed, per level, since the
previous re-assignment and since the start) and the noise figures over training, for the run's plot.
"""

from __future__ import annotations

from transformers import TrainerCallback


class LivingCodesCallback(TrainerCallback):
    """Re-assign codes after each epoch and keep the tokenizer's table equal to the model's.

    Args:
        tokenizer: the ``SemanticIDTokenizer`` the collator and the evaluation use.
        reassign: re-encode the catalogue after every epoch (DIGER); ``False`` keeps the starting codes
            for decoding while the quantizer still trains (an ablation).
    """

    def __init__(self, tokenizer, reassign: bool = True):
        self.tokenizer = tokenizer
        self.reassign = reassign

    def _sync(self, model) -> None:
        self.tokenizer.set_item_codes(model.item_codes.cpu())

    def _record(self, state, model, stats: dict[str, float]) -> None:
        row = {"epoch": state.epoch or 0.0, "step": state.global_step}
        row.update({f"codes/{key}": value for key, value in stats.items()})
        row.update({f"noise/{key}": value for key, value in model.uncertainty_decay.figures().items()})
        state.log_history.append(row)

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        if state.global_step == 0:  # the starting codes' statistics; a resumed run keeps its checkpoint's table
            stats = model.reassign_item_codes() if self.reassign else {}
            model.mark_start_codes()  # churn "since the start" counts from this table
            self._record(state, model, {k: v for k, v in stats.items() if not k.startswith("churn_from_start/")})
        self._sync(model)  # the tokenizer follows the model's table (restored from the checkpoint on resume)

    def on_epoch_end(self, args, state, control, model=None, **kwargs):
        if self.reassign and not model.codes_fixed:  # a phase on fixed codes left the quantizer as it was
            self._record(state, model, model.reassign_item_codes())
            self._sync(model)

    def on_train_end(self, args, state, control, model=None, **kwargs):
        self._sync(model)  # load_best_model_at_end may have restored an earlier table
