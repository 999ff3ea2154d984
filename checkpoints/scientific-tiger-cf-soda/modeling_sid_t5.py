"""SID-T5: a T5 encoder-decoder that reads a history of semantic IDs and generates the next one."""

from __future__ import annotations

import torch
from transformers import T5ForConditionalGeneration
from transformers.modeling_outputs import BaseModelOutput

from .configuration_sid_t5 import SIDT5Config
from .input_checks import check_count, check_histories
from .logits_process_sid import PrefixTrieLogitsProcessor
from .outputs import Recommendations
from .sid_beam_search import constrained_beam_search


class SIDT5ForConditionalGeneration(T5ForConditionalGeneration):
    """T5 for next-semantic-ID generation (TIGER's recommender).

    ``forward`` is T5's (teacher-forced cross-entropy on the target item's code tokens);
    ``generate`` is the stock one, to be constrained with :meth:`trie_logits_processor`;
    :meth:`recommend` is the fast constrained beam search used for serving and evaluation.
    """

    config_class = SIDT5Config
    # Collator columns in item indices (not token ids) that the encoder memory needs; DMRec-T5 reads
    # the history's items to look up their text embeddings.
    memory_inputs: tuple[str, ...] = ()

    def __init__(self, config: SIDT5Config):
        super().__init__(config)
        # Decoding a semantic ID is fixed-length beam search; TIGER ranks with 20 beams.
        self.generation_config.num_beams = 20
        self.generation_config.max_new_tokens = config.num_code_levels
        self.generation_config.min_new_tokens = config.num_code_levels
        self.generation_config.do_sample = False
        # register_for_auto_class records one Auto class per model class; the model answers to both
        # AutoModel and AutoModelForSeq2SeqLM, so name the first one here for trust_remote_code loading.
        qualified = f"{type(self).__module__.split('.')[-1]}.{type(self).__name__}"
        config.auto_map = {**(getattr(config, "auto_map", None) or {}), "AutoModel": qualified}

    def encoder_memory(
        self, input_ids: torch.LongTensor, attention_mask: torch.LongTensor, **item_columns: torch.Tensor
    ) -> tuple[torch.Tensor, torch.LongTensor]:
        """What the decoder cross-attends to, (B, S, D), and its mask: here the encoder's states."""
        return self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state, attention_mask

    def _encode_batch(self, tokenizer, histories: list[list[int]], users: list[int] | None) -> dict:
        batch = tokenizer.encode_histories(
            histories, users=users, return_item_index="item_index" in self.memory_inputs
        ).to(self.device)
        return dict(batch)

    def trie_logits_processor(self, tokenizer) -> PrefixTrieLogitsProcessor:
        """The vectorised trie processor for stock ``generate``, from a ``SemanticIDTokenizer``."""
        return PrefixTrieLogitsProcessor(tokenizer.trie)

    def _check_tokenizer(self, tokenizer) -> None:
        expected = (self.config.num_code_levels, self.config.codebook_size, self.config.vocab_size)
        found = (tokenizer.num_levels, tokenizer.codebook_size, tokenizer.vocab_size)
        if expected != found:
            raise ValueError(
                f"Tokenizer (levels, codebook size, vocab) = {found} does not match the model's {expected}; "
                "load the tokenizer saved with this model."
            )
        saved, held = getattr(self.config, "code_fingerprint", None), getattr(tokenizer, "code_fingerprint", None)
        if saved is not None and held is not None and saved != held:
            raise ValueError(
                f"this model was trained on the code table with fingerprint {saved} (config.json: code_fingerprint), "
                f"but the tokenizer holds {held}: the tokenizer files (item_codes.safetensors, "
                "tokenizer_config.json) come from another run. Load the tokenizer saved with this model."
            )

    @torch.no_grad()
    def recommend(
        self,
        histories: list[list[int]],
        tokenizer,
        top_k: int = 10,
        num_beams: int | None = None,
        users: list[int] | None = None,
        batch_size: int | None = None,
        precision: str = "fp32",
    ) -> Recommendations:
        """Top-``top_k`` item indices for each history, by trie-constrained beam search.

        Every returned item exists in the tokenizer's catalogue and no list repeats an item (each
        beam ends on a distinct full semantic ID, which is one item). A catalogue smaller than
        ``top_k`` fills the remaining slots with item -1 and score -inf (no item), never with a repeat.
        Histories longer than the tokenizer's ``max_history`` keep their most recent items; an empty
        history or an unknown item raises ``ValueError`` (see ``modeling.input_checks``).

        Args:
            histories: item indices per user, oldest first.
            tokenizer: the ``SemanticIDTokenizer`` saved with this model.
            top_k: items per user.
            num_beams: beam width (default ``generation_config.num_beams``); must be >= ``top_k``.
            users: user ids for the hashed user token, when the model uses one.
            batch_size: users per forward pass; default 32 on CPU (chunks of 16-32 users ran 1.4-1.7x
                more users/s than chunks of 256 there: ``benchmarks/serving_matrix.py``), 256 on a GPU.
            precision: ``"fp32"``, or ``"bf16"``: the matrix products run in bfloat16 under autocast
                (AMX / AVX-512 bf16 on recent CPUs, tensor cores on GPUs) while beam scores accumulate in
                float32. Its agreement with fp32 is measured in the README ("Serving in bf16").
        """
        top_k, num_beams, histories, users = self._check_request(histories, tokenizer, top_k, num_beams, users)
        if precision not in ("fp32", "bf16"):
            raise ValueError(f"precision must be 'fp32' or 'bf16', got {precision!r}")
        autocast = torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=precision == "bf16")
        was_training = self.training
        if was_training:  # walking every module costs ~10% of a batch-1 request
            self.eval()
        trie = tokenizer.trie.to(self.device)  # once, not per batch: the tables are read on the model's device
        if batch_size is None:
            batch_size = 32 if self.device.type == "cpu" else 256
        items, scores = [], []
        for start in range(0, len(histories), batch_size):
            chunk_users = users[start : start + batch_size] if users is not None else None
            batch = self._encode_batch(tokenizer, histories[start : start + batch_size], chunk_users)
            with autocast:
                encoded, mask = self.encoder_memory(**batch)
                found, score = constrained_beam_search(self, encoded, mask, trie, num_beams=num_beams, top_k=top_k)
            items.append(found)  # stays on the device: no host synchronisation between batches
            scores.append(score)
        if was_training:
            self.train()
        return Recommendations(items=torch.cat(items).cpu(), scores=torch.cat(scores).cpu())

    def _check_request(self, histories, tokenizer, top_k, num_beams, users):
        """(top_k, num_beams, histories, users) checked as ``recommend`` and ``recommend_with_generate`` take them."""
        self._check_tokenizer(tokenizer)
        top_k, num_beams = self._check_top_k(top_k, num_beams)
        histories = check_histories(histories, tokenizer.num_items)
        return top_k, num_beams, histories, self._check_users(users, len(histories), tokenizer)

    def _check_users(self, users, count: int, tokenizer) -> list[int] | None:
        """User indices for the hashed user token: one exact integer per history.

        A model without a user token reads none, and the ranking code passes the split's users to every model,
        so there they are not read (``sidrec.Recommender``, which takes a raw user from a person, refuses one).
        """
        if users is None or not tokenizer.num_user_buckets:
            return None
        if isinstance(users, (str, bytes)) or len(users) != count:
            raise ValueError(f"pass one user per history: {count} histories, users={users!r}")
        return [check_count(user, "a user index", minimum=0) for user in users]

    @torch.no_grad()
    def _check_top_k(self, top_k: int, num_beams: int | None) -> tuple[int, int]:
        """(top_k, the beam width to use); ``top_k`` must be a positive count no larger than it."""
        if num_beams is not None:
            num_beams = check_count(num_beams, "num_beams", "beams")
        num_beams = num_beams or self.generation_config.num_beams
        top_k = check_count(top_k, "top_k", "items")
        if top_k > num_beams:
            raise ValueError(
                f"top_k={top_k} exceeds num_beams={num_beams}: beam search returns at most one item per beam; "
                f"pass num_beams >= {top_k}"
            )
        return top_k, num_beams

    def recommend_with_generate(
        self,
        histories: list[list[int]],
        tokenizer,
        top_k: int = 10,
        num_beams: int | None = None,
        users: list[int] | None = None,
    ) -> Recommendations:
        """The same ranking through the stock ``generate(num_beams=...)`` and the trie processor.

        Slower than :meth:`recommend`; kept as the reference it is tested against and benchmarked
        beside, and as the example of constrained decoding with the plain Hugging Face API.
        """
        top_k, num_beams, histories, users = self._check_request(histories, tokenizer, top_k, num_beams, users)
        was_training = self.training
        if was_training:  # walking every module costs ~10% of a batch-1 request
            self.eval()
        encoded, mask = self.encoder_memory(**self._encode_batch(tokenizer, histories, users))
        output = self.generate(
            encoder_outputs=BaseModelOutput(last_hidden_state=encoded),
            attention_mask=mask,
            num_beams=num_beams,
            num_return_sequences=top_k,
            # What constrained search needs, set here so that no generation_config.json can change it: one
            # token per code level, no sampling.
            max_new_tokens=self.config.num_code_levels,
            min_new_tokens=self.config.num_code_levels,
            do_sample=False,
            early_stopping=True,
            length_penalty=0.0,
            logits_processor=[self.trie_logits_processor(tokenizer)],
            output_scores=True,
            return_dict_in_generate=True,
        )
        if was_training:
            self.train()
        codes = output.sequences[:, 1 : 1 + self.config.num_code_levels].cpu()
        items = tokenizer.items_from_token_ids(codes).view(len(histories), top_k)
        scores = output.sequences_scores.cpu().view(len(histories), top_k)
        return Recommendations(items=items, scores=scores)
