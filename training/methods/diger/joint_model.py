"""DIGER's joint model: SID-T5 whose input and target codes come from the live quantizer.

TIGER freezes the semantic IDs before the recommender trains. DIGER (arXiv 2601.19711) keeps the
tokenizer in the computation graph: every batch, the items of the histories and the targets are
re-encoded by the RQ-VAE with Gumbel-softmax assignment, and the recommender reads and predicts
those codes. Straight-through weights make the forward pass use the one-hot of the chosen code
(exactly the code's embedding row) while the backward pass goes through the soft probabilities, so
the recommender's cross-entropy reaches the codebooks and the encoder. METHODS.md notes that the
authors' released code lacks this path (its recommender trains on detached codes); this module is
the path: ``mode="end_to_end"``.

``mode="reference"`` is DIGER as its released code trains (METHODS.md): the recommender reads and
predicts the per-epoch code table, detached, exactly like TIGER's plain SID-T5; the batch's *target*
items are quantised with the strategy's Gumbel noise only for the tokenizer's own losses (and, for
SDUD, the loss re-weighting that trains sigma). No recommendation gradient reaches the codebooks.

:class:`JointSIDT5` is a ``SIDT5ForConditionalGeneration`` that also holds the quantizer, the
uncertainty-decay strategy and the catalogue's current code table as a buffer, so that the stock
``Trainer`` machinery (one optimizer with per-prefix learning rates, DDP, checkpoints,
``resume_from_checkpoint``, best-model loading) covers the tokenizer too. There is one recommender:
:meth:`JointSIDT5.to_recommender` returns the plain SID-T5 to save and serve.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from transformers.modeling_outputs import Seq2SeqLMOutput

from ....modeling.configuration_sid_t5 import NUM_SPECIAL_TOKENS, SIDT5Config
from ....modeling.modeling_sid_t5 import SIDT5ForConditionalGeneration
from ....tokenization.modeling_quantizer import SemanticIDQuantizer
from ....tokenization.semantic_codes import append_collision_level, code_churn, code_statistics
from ..etegrec import AlignmentOutput, distinct_rows, residual_distances
from .uncertainty_decay import UncertaintyDecay

# Config attributes that only the joint model uses; dropped from the exported recommender's config.
JOINT_CONFIG_KEYS = (
    "code_temperature",
    "hard_switch_epoch",
    "code_gradient",
    "target_gradient",
    "joint_mode",
    "tokenizer_warmup_epochs",
    "code_hysteresis",
    "freeze_codes_epoch",
    "alternate",
    "code_embeddings",
    "alignment",
)
CODE_EMBEDDINGS = ("table", "codebook")
CODE_GRADIENTS = ("raw", "calibrated")
JOINT_MODES = ("end_to_end", "reference")
FROZEN_ENCODER = ("none", "all", "all_but_last")


def freeze_encoder(quantizer: SemanticIDQuantizer, which: str) -> None:
    """Freeze the quantizer's encoder: ``all`` of it (DIGER-FrqUD), ``all_but_last`` layer (SDUD), or ``none``."""
    if which not in FROZEN_ENCODER:
        raise ValueError(f"frozen_encoder must be one of {FROZEN_ENCODER}, got {which!r}")
    layers = [module for module in quantizer.encoder if isinstance(module, torch.nn.Linear)]
    frozen = {"none": [], "all": layers, "all_but_last": layers[:-1]}[which]
    for layer in frozen:
        layer.requires_grad_(False)


@dataclass
class JointOutput(Seq2SeqLMOutput):
    """``Seq2SeqLMOutput`` plus what the tokenizer side of a joint step produced.

    Attributes:
        loss: the recommender loss as optimised (SDUD re-weights the cross-entropy).
        recommendation_loss: the plain next-SID cross-entropy (for logging and comparison).
        quantizer_loss: RQ-VAE reconstruction + quantisation loss of the batch's items.
        code_probs: (n, L, K) noise-free soft code distributions of the batch's distinct items.
        codes: (n, L) the codes the recommender read and predicted for those items.
        target_code_logits: (B, L, K) noise-free code logits of each row's target (SODA's positives).
        negative_code_logits: (B, N, L, K) the same for sampled negatives, when the batch has them.
        alignment: ETEGRec's alignment inputs (``joint.alignment``; None during the tokenizer warm-up).
    """

    recommendation_loss: torch.FloatTensor | None = None
    quantizer_loss: torch.FloatTensor | None = None
    code_probs: torch.FloatTensor | None = None
    codes: torch.LongTensor | None = None
    target_code_logits: torch.FloatTensor | None = None
    negative_code_logits: torch.FloatTensor | None = None
    alignment: AlignmentOutput | None = None


class JointSIDT5(SIDT5ForConditionalGeneration):
    """SID-T5 trained jointly with its tokenizer's quantizer (DIGER).

    Build it with :meth:`from_recommender_config` (it needs the fitted quantizer, the catalogue's
    content embeddings and its starting code table). ``forward`` without ``item_index`` and
    ``target_items`` is plain SID-T5; with them it is the joint step described in the module
    docstring. ``recommend`` decodes with the tokenizer's table, which
    :class:`~sidrec.training.living_codes.LivingCodesCallback` keeps in step with the quantizer.
    """

    item_inputs = ("item_index", "target_items", "negative_items")
    # Parameters of the tokenizer side: the quantizer and its uncertainty strategy (SDUD's sigma).
    tokenizer_prefixes = ("quantizer.", "uncertainty_decay.")
    # Checkpoints of the joint model are for resuming, not for the Hub: do not copy this file (which
    # imports from training/) beside them as remote code. The exported recommender carries its code.
    _auto_class = None

    def attach_tokenizer(
        self,
        quantizer: SemanticIDQuantizer,
        item_embeddings: torch.Tensor,
        item_codes: torch.LongTensor,
        uncertainty_decay: UncertaintyDecay,
        trainable: bool = True,
        frozen_encoder: str = "none",
    ) -> None:
        """Make the quantizer, its strategy and the catalogue part of this model.

        The quantizer and the strategy become sub-modules (``quantizer.*``,
        ``uncertainty_decay.*`` parameter names, which ``training.learning_rates`` addresses). The
        code table is a buffer, saved in every checkpoint, so resuming restores the exact codes. The
        content embeddings are inputs, never trained or saved: a plain attribute rather than a buffer,
        so that DDP does not broadcast the whole catalogue before every step. ``frozen_encoder`` keeps
        encoder layers fixed (see :func:`freeze_encoder`); a tokenizer warm-up later freezes the rest
        for its first epochs and restores exactly this set.
        """
        expected = (self.config.num_code_levels - 1, self.config.codebook_size)
        found = (quantizer.config.num_levels, quantizer.config.codebook_size)
        if found != expected:
            raise ValueError(
                f"quantizer (levels, codebook size) = {found} does not fit the model's {expected} "
                "(the model has one more level: the collision level)"
            )
        self.quantizer = quantizer.train()
        self.quantizer.requires_grad_(trainable)
        freeze_encoder(self.quantizer, frozen_encoder)
        self.phase = "joint"  # joint | tokenizer | recommender | frozen_codes (see set_epoch)
        if getattr(self.config, "code_embeddings", "table") == "codebook":
            self._derive_code_embeddings()
        if getattr(self.config, "alignment", False):
            # ETEGRec's projections: the pooled encoder state into the tokenizer's latent space (sequence-item
            # alignment), the first decoder state into the item-embedding space (preference-semantic).
            self.sequence_adapter = torch.nn.Linear(self.config.d_model, quantizer.config.latent_dim)
            self.preference_adapter = torch.nn.Linear(self.config.d_model, quantizer.config.input_dim)
        self.warming_up = getattr(self.config, "tokenizer_warmup_epochs", 0) > 0
        self.uncertainty_decay = uncertainty_decay
        # Taken once everything is attached: the strategy's sigma is tokenizer-side and the code
        # projection recommender-side, so the phases and the warm-up freeze and restore them too.
        trainable = {name for name, param in self.named_parameters() if param.requires_grad}
        self.tokenizer_trainable = {name for name in trainable if name.startswith(self.tokenizer_prefixes)}
        self.recommender_trainable = trainable - self.tokenizer_trainable
        self.item_embeddings = item_embeddings.detach().float()
        self.register_buffer("item_codes", torch.as_tensor(item_codes, dtype=torch.long).clone())
        # The table training started from and the churn of the last re-assignment (both saved with checkpoints).
        self.register_buffer("initial_item_codes", self.item_codes.clone())
        self.register_buffer("last_churn", torch.zeros(self.config.num_code_levels))
        self.code_hard = self.config.hard_switch_epoch == 0

    # ----- code-token embeddings derived from the codebooks ------------------------------------------
    def _derive_code_embeddings(self) -> None:
        """Make each code token's embedding ``W_l e_{l,k} + b_{l,k}``, tied to the output layer.

        ``b`` is the code's row of the ordinary embedding table and ``W_l`` one linear map per level
        (``code_projection``, zero at the start, so training starts from TIGER's table). ``e`` is the
        codebook vector, detached: the embedding follows a code that moves, but the recommendation
        loss does not move the codebooks through this path. Forward hooks add ``W e`` to the shared
        embedding's output and to the output layer's logits, so every caller (the joint step, the
        fast beam search, ``generate``) sees the same derived table; :meth:`to_recommender` writes it
        into a plain SID-T5's table.
        """
        levels, width = self.quantizer.config.num_levels, self.quantizer.config.latent_dim
        self.code_projection = torch.nn.ModuleList(torch.nn.Linear(width, self.config.d_model) for _ in range(levels))
        for layer in self.code_projection:
            torch.nn.init.zeros_(layer.weight)
            torch.nn.init.zeros_(layer.bias)
        # T5 ties three embedding modules to one weight: the joint step reads ``shared``, the stacks their own.
        for embedding in {
            id(m): m for m in (self.shared, self.encoder.embed_tokens, self.decoder.embed_tokens)
        }.values():
            embedding.register_forward_hook(self._embedding_hook)
        self.lm_head.register_forward_hook(self._output_hook)

    def _embedding_hook(self, module, args, output):
        return output + F.embedding(args[0], self.code_delta())

    def _output_hook(self, module, args, output):
        return output + args[0] @ self.code_delta().t()

    def _derived_rows(self) -> torch.Tensor:
        """(L K, d): ``W_l e_{l,k}`` for every level's codes, in vocabulary order."""
        codebooks = self.quantizer.codebooks.detach()
        derived = torch.cat([layer(codebooks[level]) for level, layer in enumerate(self.code_projection)])
        return derived.to(self.shared.weight.dtype)

    def code_delta(self) -> torch.Tensor:
        """(V, d): ``W_l e_{l,k}`` on the code tokens' rows, zero elsewhere (the table's rows are ``b``)."""
        weight = self.shared.weight
        if not hasattr(self, "code_projection"):
            return weight.new_zeros(weight.shape)
        derived = self._derived_rows()
        before = weight.new_zeros(NUM_SPECIAL_TOKENS, weight.size(1))
        after = weight.new_zeros(weight.size(0) - NUM_SPECIAL_TOKENS - derived.size(0), weight.size(1))
        return torch.cat([before, derived, after])

    def code_token_embeddings(self) -> torch.Tensor:
        """(L, K, d): the embeddings of every level's code tokens as the model uses them.

        With the table (TIGER's) this is a view of the embedding rows, as before derived embeddings
        existed; no vocabulary-sized delta is built on the joint step's hot path.
        """
        levels, size = self.quantizer.config.num_levels, self.config.codebook_size
        rows = self.shared.weight[NUM_SPECIAL_TOKENS : NUM_SPECIAL_TOKENS + levels * size]
        if hasattr(self, "code_projection"):
            rows = rows + self._derived_rows()
        return rows.view(levels, size, -1)

    @classmethod
    def from_recommender_config(
        cls,
        config: SIDT5Config,
        quantizer: SemanticIDQuantizer,
        item_embeddings: torch.Tensor,
        item_codes: torch.LongTensor,
        uncertainty_decay: UncertaintyDecay,
        code_temperature: float = 2.0,
        hard_switch_epoch: int | None = 0,
        trainable: bool = True,
        code_gradient: str = "raw",
        target_gradient: bool = False,
        mode: str = "end_to_end",
        frozen_encoder: str = "none",
        tokenizer_warmup_epochs: int = 0,
        code_hysteresis: float = 0.0,
        freeze_codes_epoch: int | None = None,
        alternate: bool = False,
        code_embeddings: str = "table",
        alignment: bool = False,
    ) -> JointSIDT5:
        """A fresh recommender with the tokenizer attached.

        Args:
            code_temperature: Gumbel-softmax ``tau`` of the joint assignment (DIGER: 2).
            hard_switch_epoch: epoch from which the forward pass uses straight-through one-hots; before
                it, soft mixtures of code embeddings. ``None`` = never (DIGER's FrqUD), 0 = from the start.
            trainable: ``False`` freezes the quantizer (noisy but fixed codes; no gradient reaches it).
            code_gradient: ``"raw"`` sends the recommendation loss back through the assignment in raw
                squared-distance units; ``"calibrated"`` in the calibrated logit units, which pulls up
                to 1e4 times harder on deep levels (see ``SemanticIDQuantizer.assign``).
            target_gradient: let the loss move the *target* item's codes too (DIGER as published).
                ``False`` keeps only the path through the history's codes (README, DIGER: collapse).
            mode: ``"end_to_end"`` (the recommendation loss reaches the codes) or ``"reference"`` (DIGER's
                released code: detached table in and out; see the module docstring).
            frozen_encoder: ``none``, ``all`` or ``all_but_last`` encoder layers kept fixed.
            tokenizer_warmup_epochs: the quantizer stays frozen for this many first epochs.
            code_hysteresis: an item keeps its code at a level unless a new one is better by more than this
                many logit units (in every joint step and at every re-assignment); 0 = nearest codes.
            freeze_codes_epoch: from this epoch on the codes are frozen (no quantizer update, no
                re-assignment) and the recommender trains on the fixed table: ETEGRec's final phase.
            alternate: ETEGRec's cycle: even epochs train the tokenizer (recommendation loss through the
                codes, recommender frozen), odd epochs the recommender on the fixed table.
            code_embeddings: ``"table"`` (one free row per code, TIGER's) or ``"codebook"`` (derived from the
                codebook vectors, see :meth:`_derive_code_embeddings`).
            alignment: add ETEGRec's two projections, and return the alignment losses' inputs from each
                step (reference mode only; see :mod:`sidrec.training.methods.etegrec`).
        """
        if code_gradient not in CODE_GRADIENTS:
            raise ValueError(f"code_gradient must be one of {CODE_GRADIENTS}, got {code_gradient!r}")
        if code_embeddings not in CODE_EMBEDDINGS:
            raise ValueError(f"code_embeddings must be one of {CODE_EMBEDDINGS}, got {code_embeddings!r}")
        if mode not in JOINT_MODES:
            raise ValueError(f"joint mode must be one of {JOINT_MODES}, got {mode!r}")
        config = copy.deepcopy(config)  # the joint settings belong to this model, not to the caller's config
        config.code_gradient = code_gradient
        config.target_gradient = target_gradient
        config.code_temperature = code_temperature
        config.hard_switch_epoch = hard_switch_epoch
        config.joint_mode = mode
        config.tokenizer_warmup_epochs = int(tokenizer_warmup_epochs)
        config.code_hysteresis = float(code_hysteresis)
        config.freeze_codes_epoch = freeze_codes_epoch
        config.alternate = bool(alternate)
        config.code_embeddings = code_embeddings
        if alignment and mode != "reference":
            raise ValueError("ETEGRec's alignment runs on the detached table: use it with mode='reference'")
        config.alignment = bool(alignment)
        model = cls(config)
        model.attach_tokenizer(quantizer, item_embeddings, item_codes, uncertainty_decay, trainable, frozen_encoder)
        return model

    def set_epoch(self, epoch: float) -> None:
        """Set the epoch's phase and hard-code switch, and tell the strategy the epoch.

        Phases: ``joint`` (the mode's step), ``tokenizer`` (alternating, even epochs after the warm-up: the
        recommender's parameters frozen), ``recommender`` (alternating: odd epochs after the warm-up, and
        the warm-up itself) and ``frozen_codes`` (from ``freeze_codes_epoch``), both on the fixed table
        with the quantizer frozen. The tokenizer warm-up freezes the quantizer (and SDUD's sigma). A frozen
        parameter has ``requires_grad`` off, so it gets no gradient and the optimizer skips it; afterwards
        exactly the parameters trainable at attach time train.
        """
        epoch_index = int(epoch)
        switch = self.config.hard_switch_epoch
        self.code_hard = switch is not None and epoch_index >= switch
        freeze = getattr(self.config, "freeze_codes_epoch", None)
        warmup = getattr(self.config, "tokenizer_warmup_epochs", 0)
        self.warming_up = epoch_index < warmup
        if freeze is not None and epoch_index >= freeze:
            self.phase = "frozen_codes"
        elif getattr(self.config, "alternate", False):
            # ETEGRec: the warm-up trains the recommender alone; the cycle starts after it, tokenizer first.
            cycle = epoch_index - warmup
            self.phase = "recommender" if self.warming_up or cycle % 2 == 1 else "tokenizer"
        else:
            self.phase = "joint"
        tokenizer_trains = not self.warming_up and self.phase in ("joint", "tokenizer")
        for name, param in self.named_parameters():
            if name.startswith(self.tokenizer_prefixes):
                param.requires_grad_(name in self.tokenizer_trainable and tokenizer_trains)
            elif name in self.recommender_trainable:
                param.requires_grad_(self.phase != "tokenizer")
        self.uncertainty_decay.set_epoch(epoch)

    @property
    def codes_fixed(self) -> bool:
        """Whether this epoch's quantizer is frozen and the recommender reads the fixed table."""
        return self.phase in ("recommender", "frozen_codes")

    # ----- the joint step -------------------------------------------------------------------------
    def _assign(self, items: torch.LongTensor):
        """Encode ``items`` (n,) and assign their codes with the strategy's noise (none in eval mode)."""
        if self.item_embeddings.device != items.device:
            self.item_embeddings = self.item_embeddings.to(items.device)
        embeddings = self.item_embeddings[items]
        latent = self.quantizer.encoder(embeddings)
        first_codes = self.quantizer.first_level_codes(latent)[:, None]
        noise = self.uncertainty_decay.noise_scale(first_codes) if self.training and not self.codes_fixed else 0.0
        levels = self.quantizer.config.num_levels
        output = self.quantizer.assign(
            latent,
            mode="gumbel",
            hard=self.code_hard,
            temperature=self.config.code_temperature,
            noise_scale=noise,
            raw_distance_gradient=self.config.code_gradient == "raw",
            previous_codes=self.item_codes[items, :levels],
            hysteresis=getattr(self.config, "code_hysteresis", 0.0),
        )
        return self.quantizer.decode(embeddings, output)

    def _code_weights(self, assignment: torch.Tensor, codes: torch.LongTensor) -> torch.Tensor:
        """Weights (n, L, K) whose forward value is the exact one-hot (hard) and whose gradient is the soft one."""
        if not self.code_hard:
            return assignment
        one_hot = F.one_hot(codes, self.config.codebook_size).to(assignment.dtype)
        return one_hot + (assignment - assignment.detach())

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        item_index: torch.LongTensor | None = None,
        target_items: torch.LongTensor | None = None,
        negative_items: torch.LongTensor | None = None,
        **kwargs,
    ):
        if item_index is None or target_items is None:
            return super().forward(input_ids=input_ids, attention_mask=attention_mask, labels=labels, **kwargs)
        if negative_items is None:
            negative_items = target_items.new_empty((len(target_items), 0))
        if getattr(self.config, "joint_mode", "end_to_end") == "reference" or self.codes_fixed:
            return self._reference_forward(input_ids, attention_mask, labels, target_items, negative_items, **kwargs)
        levels = self.quantizer.config.num_levels
        size = self.config.codebook_size
        level_of_token = (input_ids - NUM_SPECIAL_TOKENS).div(size, rounding_mode="floor")
        rows, cols = torch.nonzero((item_index >= 0) & (level_of_token < levels), as_tuple=True)
        history_items = item_index[rows, cols]
        batch_items = torch.cat([history_items, target_items, negative_items.flatten()])
        items, inverse = torch.unique(batch_items, return_inverse=True)
        history_slot, target_slot, negative_slot = inverse.split(
            [len(history_items), len(target_items), negative_items.numel()]
        )

        quantized = self._assign(items)
        weights = self._code_weights(quantized.assignment, quantized.codes)  # (n, L, K)
        table = self.code_token_embeddings()
        code_embeddings = torch.einsum("nlk,lkd->nld", weights, table)  # (n, L, d)

        # The target's codes: with target_gradient off, the loss may not move them (it would reward collapse:
        # codes that are all alike are easy to predict); the history's codes still learn from it.
        target_weights = weights[target_slot] if self.config.target_gradient else weights[target_slot].detach()
        target_embeddings = torch.einsum("blk,lkd->bld", target_weights, table)

        inputs_embeds = self.shared(input_ids).index_put(
            (rows, cols), code_embeddings[history_slot, level_of_token[rows, cols]]
        )
        # Teacher forcing: the decoder reads <start>, then the target's codes (its collision token from the table).
        target_codes = quantized.codes[target_slot] + torch.tensor(
            self.config.token_offsets[:levels], device=labels.device
        )
        labels = torch.cat([target_codes, labels[:, levels:]], dim=1)
        decoder_inputs_embeds = self.shared(self._shift_right(labels))
        decoder_inputs_embeds = torch.cat(
            [decoder_inputs_embeds[:, :1], target_embeddings, decoder_inputs_embeds[:, 1 + levels :]], dim=1
        )[:, : labels.size(1)]
        kwargs.setdefault("use_cache", False)
        outputs = super().forward(
            inputs_embeds=inputs_embeds,
            attention_mask=attention_mask,
            decoder_inputs_embeds=decoder_inputs_embeds,
            **kwargs,
        )
        log_probs = outputs.logits.float().log_softmax(dim=-1)  # (B, L + 1, V)
        code_log_probs = log_probs[:, :levels, NUM_SPECIAL_TOKENS : NUM_SPECIAL_TOKENS + levels * size]
        code_log_probs = code_log_probs.view(len(labels), levels, levels, size).diagonal(dim1=1, dim2=2).transpose(1, 2)
        code_nll = -(target_weights * code_log_probs).sum(dim=-1)  # (B, L): soft-label CE per level
        rest_nll = -log_probs[:, levels:].gather(-1, labels[:, levels:, None]).squeeze(-1)
        cross_entropy = torch.cat([code_nll, rest_nll], dim=1).mean()

        if self.training:
            self.uncertainty_decay.update(quantized.deterministic_codes)
        return JointOutput(
            loss=self.uncertainty_decay.weight_loss(cross_entropy),
            recommendation_loss=cross_entropy,
            quantizer_loss=quantized.loss,
            code_probs=quantized.probs,
            codes=quantized.codes,
            target_code_logits=quantized.logits[target_slot],
            negative_code_logits=quantized.logits[negative_slot].view(*negative_items.shape, levels, size),
            logits=outputs.logits,
        )

    def _reference_forward(self, input_ids, attention_mask, labels, target_items, negative_items, **kwargs):
        """DIGER's released step: the recommender on the detached table; the quantizer on the targets alone.

        ``input_ids`` and ``labels`` already hold the table's codes (the collator tokenises with the
        tokenizer, which :class:`LivingCodesCallback` keeps equal to ``item_codes``), so the recommender
        step is plain SID-T5. The targets (and SODA's negatives) are quantised with the strategy's noise
        for the tokenizer's own losses and FrqUD's usage statistics; SDUD's sigma learns from both the
        quantizer loss and the re-weighted cross-entropy. In a phase on fixed codes (see :meth:`set_epoch`)
        the same step runs with the quantizer out of the graph and without noise.
        """
        aligning = getattr(self.config, "alignment", False) and not self.warming_up
        if aligning:
            kwargs["output_hidden_states"] = True  # the first decoder state (preference-semantic alignment)
        outputs = super().forward(input_ids=input_ids, attention_mask=attention_mask, labels=labels, **kwargs)
        levels, size = self.quantizer.config.num_levels, self.config.codebook_size
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.codes_fixed):
            quantized = self._assign(torch.cat([target_items, negative_items.flatten()]))
        if self.training and not self.codes_fixed:
            self.uncertainty_decay.update(quantized.deterministic_codes[: len(target_items)])
        alignment = self._alignment(outputs, attention_mask, target_items, quantized) if aligning else None
        return JointOutput(
            alignment=alignment,
            loss=self.uncertainty_decay.weight_loss(outputs.loss),
            recommendation_loss=outputs.loss,
            quantizer_loss=quantized.loss,
            code_probs=quantized.probs,
            codes=quantized.codes,
            target_code_logits=quantized.logits[: len(target_items)],
            negative_code_logits=quantized.logits[len(target_items) :].view(*negative_items.shape, levels, size),
            logits=outputs.logits,
        )

    def _alignment(self, outputs, attention_mask, target_items, quantized) -> AlignmentOutput:
        """ETEGRec's alignment inputs for the batch's distinct targets (see ``training/methods/etegrec.py``).

        The target side (its latent's distances on its own codes, its reconstruction) carries gradients to
        the tokenizer in a tokenizer epoch and none on fixed codes; the sequence side always reaches the
        recommender's encoder and decoder through the two projections.
        """
        rows = distinct_rows(target_items)
        mask = attention_mask[rows, :, None].to(outputs.encoder_last_hidden_state.dtype)
        pooled = (outputs.encoder_last_hidden_state[rows] * mask).sum(1) / mask.sum(1).clamp_min(1.0)
        sequence_latent = self.sequence_adapter(pooled)
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.codes_fixed):
            item_codes = quantized.deterministic_codes[rows]
            item_distances = residual_distances(self.quantizer, quantized.latent[rows], item_codes)
        return AlignmentOutput(
            sequence_distances=residual_distances(self.quantizer, sequence_latent),
            item_distances=item_distances,
            preference=self.preference_adapter(outputs.decoder_hidden_states[-1][rows, 0]),
            reconstruction=quantized.reconstruction[rows],
        )

    # ----- the catalogue's codes ------------------------------------------------------------------
    @torch.no_grad()
    def mark_start_codes(self) -> None:
        """Remember the current table as the one training started from (churn "since the start")."""
        self.initial_item_codes.copy_(self.item_codes)

    @torch.no_grad()
    def code_churn(self) -> dict[str, float]:
        """Churn of the last re-assignment (``churn/...``) and since the start (``churn_from_start/...``)."""
        levels = self.config.num_code_levels - 1
        figures = {f"churn/level{level}": self.last_churn[level].item() for level in range(levels)}
        figures["churn/any"] = self.last_churn[levels].item()
        since_start = code_churn(self.initial_item_codes[:, :levels], self.item_codes[:, :levels])
        figures.update({f"churn_from_start/{key}": value for key, value in since_start.items()})
        return figures

    @torch.no_grad()
    def reassign_item_codes(self) -> dict[str, float]:
        """Re-encode the whole catalogue, renumber collisions, store the table.

        The codes are the quantizer's noise-free ones (nearest, or Sinkhorn-balanced where its config
        says). Returns the code statistics (per-level usage and perplexity, collision rate) of the new
        codes and their churn (since the previous table and since the start).
        """
        raw = self.quantizer.encode_codes(
            self.item_embeddings.to(self.item_codes.device),
            previous_codes=self.item_codes[:, :-1],
            hysteresis=getattr(self.config, "code_hysteresis", 0.0),
        )
        try:
            table = append_collision_level(raw.cpu(), self.config.codebook_size)
        except ValueError as error:
            raise ValueError(
                f"Joint training collapsed the semantic IDs: {error} Lower joint.tokenizer_learning_rate, raise the "
                "quantizer objective's weight, or use an uncertainty decay (frqud, sdud) that keeps exploring codes."
            ) from error
        previous = self.item_codes[:, :-1].cpu()
        churn = code_churn(previous, raw.cpu())
        self.last_churn.copy_(torch.tensor(list(churn.values()), dtype=self.last_churn.dtype))
        self.item_codes.copy_(table.to(self.item_codes.device))
        return {**code_statistics(raw.cpu(), self.config.codebook_size), **self.code_churn()}

    def to_recommender(self) -> SIDT5ForConditionalGeneration:
        """The plain SID-T5 with this model's trained weights (what is saved, served and pushed)."""
        values = {k: v for k, v in self.config.to_dict().items() if k not in JOINT_CONFIG_KEYS}
        values.pop("architectures", None)
        values.pop("auto_map", None)
        recommender = SIDT5ForConditionalGeneration(SIDT5Config.from_dict(values))
        joint_only = ("quantizer.", "uncertainty_decay.", "item_codes", "initial_item_codes", "last_churn")
        joint_only += ("code_projection.", "sequence_adapter.", "preference_adapter.")
        state = {k: v for k, v in self.state_dict().items() if not k.startswith(joint_only)}
        with torch.no_grad():  # derived code embeddings become the plain model's table (tied to its output layer)
            table = self.shared.weight + self.code_delta()
        for key in ("shared.weight", "encoder.embed_tokens.weight", "decoder.embed_tokens.weight", "lm_head.weight"):
            if key in state:
                state[key] = table
        recommender.load_state_dict(state)
        recommender.generation_config = copy.deepcopy(self.generation_config)
        return recommender.to(self.device).train(self.training)
