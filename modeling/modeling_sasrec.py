"""SASRec: next-item prediction over item ids with a causal Transformer, ranked over the whole catalogue.

Histories are **right-padded** (oldest item at position 0): with a causal mask every real position
attends only to real items, so no key-padding mask is needed and no row is fully masked. The item
embedding table is tied to the output layer (scores = ``h @ E[1:]^T``), as in the paper.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.utils import ModelOutput

from .configuration_sasrec import SASRecConfig
from .input_checks import check_count, check_histories
from .outputs import Recommendations, exclude_items


@dataclass
class SASRecOutput(ModelOutput):
    """``loss`` (when labels are given), ``logits`` (B, S, num_items) or None, ``hidden_states`` (B, S, d)."""

    loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    hidden_states: torch.FloatTensor | None = None


class SASRecBlock(nn.Module):
    """Pre-norm causal self-attention and a position-wise feed-forward layer, each with a residual."""

    def __init__(self, config: SASRecConfig):
        super().__init__()
        d = config.hidden_size
        self.attention_norm = nn.LayerNorm(d, eps=1e-8)
        self.attention = nn.MultiheadAttention(d, config.num_heads, dropout=config.dropout, batch_first=True)
        self.feed_forward_norm = nn.LayerNorm(d, eps=1e-8)
        self.feed_forward = nn.Sequential(
            nn.Linear(d, d), nn.GELU(), nn.Dropout(config.dropout), nn.Linear(d, d), nn.Dropout(config.dropout)
        )
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, hidden: torch.Tensor, causal_mask: torch.Tensor) -> torch.Tensor:
        normed = self.attention_norm(hidden)
        attended, _ = self.attention(normed, normed, normed, attn_mask=causal_mask, need_weights=False)
        hidden = hidden + self.dropout(attended)
        return hidden + self.feed_forward(self.feed_forward_norm(hidden))


class SASRecForSequentialRecommendation(PreTrainedModel):
    """SASRec as a ``PreTrainedModel``: ``AutoModel`` and ``trust_remote_code`` portable.

    Inputs: ``input_ids`` (B, S) item indices + 1, right-padded with 0; ``labels`` (B, S) the next
    item's index at each position, -100 where there is none. ``negative_ids`` (B, S) sampled
    negatives for the ``bce`` loss (drawn uniformly in ``forward`` when not given).
    """

    config_class = SASRecConfig
    base_model_prefix = "sasrec"
    main_input_name = "input_ids"

    def __init__(self, config: SASRecConfig):
        super().__init__(config)
        self.item_embeddings = nn.Embedding(config.num_items + 1, config.hidden_size, padding_idx=0)
        self.position_embeddings = nn.Embedding(config.max_seq_length, config.hidden_size)
        self.embedding_dropout = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(SASRecBlock(config) for _ in range(config.num_layers))
        self.final_norm = nn.LayerNorm(config.hidden_size, eps=1e-8)
        self.post_init()

    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            init.normal_(module.weight, mean=0.0, std=self.config.initializer_range)
            if isinstance(module, nn.Embedding) and module.padding_idx is not None:
                init.zeros_(module.weight[module.padding_idx])
            if getattr(module, "bias", None) is not None:
                init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            init.ones_(module.weight)
            init.zeros_(module.bias)

    def _check_item_range(self, input_ids: torch.LongTensor) -> None:
        """A clear error for an item outside the catalogue, on CPU tensors only.

        The check reads a value back to the host, which on a GPU would stall every training step; there
        an out-of-range index still fails, in the embedding lookup.
        """
        if input_ids.device.type != "cpu" or not input_ids.numel():
            return
        largest = int(input_ids.max())
        if largest > self.config.num_items:
            raise ValueError(f"item index {largest - 1} is outside the catalogue of {self.config.num_items} items")

    def encode(self, input_ids: torch.LongTensor) -> torch.Tensor:
        """(B, S, d) causal states; position t has read items 0..t of the history."""
        if input_ids.size(1) > self.config.max_seq_length:
            raise ValueError(
                f"history of {input_ids.size(1)} items exceeds max_seq_length {self.config.max_seq_length}; "
                "keep the most recent items (recommend() does this)"
            )
        self._check_item_range(input_ids)
        positions = torch.arange(input_ids.size(1), device=input_ids.device)
        hidden = self.item_embeddings(input_ids) * self.config.hidden_size**0.5 + self.position_embeddings(positions)
        hidden = self.embedding_dropout(hidden) * (input_ids > 0).unsqueeze(-1)
        length = input_ids.size(1)
        causal = torch.ones(length, length, dtype=torch.bool, device=input_ids.device).triu(1)  # True = masked
        for block in self.blocks:
            hidden = block(hidden, causal)
        return self.final_norm(hidden)

    def item_scores(self, hidden: torch.Tensor) -> torch.Tensor:
        """(..., num_items) dot products with every item's embedding (the tied output layer)."""
        return hidden @ self.item_embeddings.weight[1:].T

    def forward(
        self,
        input_ids: torch.LongTensor,
        labels: torch.LongTensor | None = None,
        negative_ids: torch.LongTensor | None = None,
        **kwargs,
    ) -> SASRecOutput:
        hidden = self.encode(input_ids)
        if labels is None:
            return SASRecOutput(logits=self.item_scores(hidden), hidden_states=hidden)
        active = labels >= 0
        if self.config.loss_type == "ce":  # full softmax over the catalogue, only at positions with a next item
            logits = self.item_scores(hidden[active]).float()
            return SASRecOutput(loss=F.cross_entropy(logits, labels[active]), hidden_states=hidden)
        if negative_ids is None:
            negative_ids = torch.randint(0, self.config.num_items, labels.shape, device=labels.device)
        positive = (hidden * self.item_embeddings(labels.clamp_min(0) + 1)).sum(-1)[active]
        negative = (hidden * self.item_embeddings(negative_ids + 1)).sum(-1)[active]
        loss = F.softplus(-positive).mean() + F.softplus(negative).mean()  # BCE(pos, 1) + BCE(neg, 0)
        return SASRecOutput(loss=loss, hidden_states=hidden)

    def pad_histories(self, histories: list[list[int]]) -> torch.LongTensor:
        """Right-padded (B, S) ``input_ids`` of the most recent ``max_seq_length`` items of each history."""
        if any(len(history) == 0 for history in histories):
            raise ValueError("recommend got an empty history; every user needs at least one known item")
        kept = [history[-self.config.max_seq_length :] for history in histories]
        padded = torch.zeros((len(kept), max(map(len, kept))), dtype=torch.long)
        for row, history in enumerate(kept):
            padded[row, : len(history)] = torch.as_tensor(history, dtype=torch.long) + 1
        return padded

    @torch.no_grad()
    def recommend(
        self,
        histories: list[list[int]],
        top_k: int = 10,
        batch_size: int = 256,
        exclude_history: bool = False,
    ) -> Recommendations:
        """Top-``top_k`` item indices per history (oldest first), scored over the whole catalogue.

        ``exclude_history=False`` (the default) keeps items the user already has as candidates, the
        same protocol as the generative models' evaluation, where re-consumption counts.
        """
        top_k = check_count(top_k, "top_k", "items")
        histories = check_histories(histories, self.config.num_items)
        was_training = self.training
        if was_training:  # walking every module costs ~10% of a batch-1 request
            self.eval()
        items, scores = [], []
        for start in range(0, len(histories), batch_size):
            chunk = histories[start : start + batch_size]
            input_ids = self.pad_histories(chunk).to(self.device)
            last = (input_ids > 0).sum(dim=1) - 1
            hidden = self.encode(input_ids)[torch.arange(len(chunk), device=self.device), last]
            logits = self.item_scores(hidden).float()
            if exclude_history:  # every item of the history, also those older than the window the model reads
                exclude_items(logits, chunk)
            top = logits.topk(min(top_k, logits.size(1)), dim=1)
            items.append(top.indices.cpu())
            scores.append(top.values.cpu())
        if was_training:
            self.train()
        return Recommendations(items=torch.cat(items), scores=torch.cat(scores))
