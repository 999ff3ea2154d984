"""Mult-VAE with DMRec's probabilistic meta-network: the paper's own experimental setting.

A user is the set of items they interacted with. The encoder maps the (dropped-out) multi-hot
vector to ``q(z | x)``; the meta-network maps the same vector times the item text embeddings (plus
a user text embedding where the data has one) to ``p(z | s)``; the decoder maps ``z`` to a
multinomial over the catalogue. ``forward`` returns the multinomial log-likelihood as ``loss`` and
the Gaussians; the matching regulariser (GODM / CPDM / MDDM, or the plain VAE KL) is an objective
the trainer adds (``sidrec.training.objectives.DMRecObjective``), so the strategy and ``beta`` live
in the recipe.

The multi-hot input is never materialised: the first layer is an ``EmbeddingBag`` sum over the
user's items with the dropout mask as per-item weights, which is ``Linear(Dropout(x))`` for a 0/1
``x`` at a fraction of the cost on a 12,000-item catalogue.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.utils import ModelOutput

from .configuration_mult_vae import MultVAEConfig
from .gaussian_matching import DiagonalGaussian, GaussianHead, ProbabilisticMetaNetwork
from .input_checks import check_count, check_histories
from .outputs import Recommendations, exclude_items, pad_item_sets


@dataclass
class MultVAEOutput(ModelOutput):
    """``loss``: multinomial negative log-likelihood of the user's items (mean over users).

    ``logits`` (B, num_items) decoder scores; ``posterior`` the Gaussian ``z`` was drawn from;
    ``collaborative`` the encoder's head alone; ``language`` the meta-network's (None without one).
    """

    loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    posterior: DiagonalGaussian | None = None
    collaborative: DiagonalGaussian | None = None
    language: DiagonalGaussian | None = None


class MultVAEForCollaborativeFiltering(PreTrainedModel):
    """Mult-VAE over item sets, with the optional DMRec meta-network (``config.text_embedding_size`` > 0).

    Inputs: ``item_ids`` (B, N) each user's items, padded with -1; optionally
    ``user_text_embeddings`` (B, text size).
    """

    config_class = MultVAEConfig
    base_model_prefix = "mult_vae"
    main_input_name = "item_ids"

    def __init__(self, config: MultVAEConfig):
        super().__init__(config)
        self.input_layer = nn.EmbeddingBag(config.num_items, config.hidden_size, mode="sum")
        self.input_bias = nn.Parameter(torch.zeros(config.hidden_size))
        self.collaborative_head = GaussianHead(config.hidden_size, config.latent_size)
        self.decoder = nn.Sequential(
            nn.Linear(config.latent_size, config.hidden_size),
            nn.Tanh(),
            nn.Linear(config.hidden_size, config.num_items),
        )
        if config.text_embedding_size:
            self.register_buffer("item_text_embeddings", torch.zeros(config.num_items, config.text_embedding_size))
            self.meta_network = ProbabilisticMetaNetwork(
                config.text_embedding_size, config.meta_hidden_size, config.latent_size
            )
        else:
            self.meta_network = None
        self.post_init()

    def _init_weights(self, module: nn.Module) -> None:
        # Xavier for every weight, zero biases (the Mult-VAE paper's initialisation).
        if isinstance(module, (nn.Linear, nn.EmbeddingBag)):
            init.xavier_uniform_(module.weight)
            if getattr(module, "bias", None) is not None:
                init.zeros_(module.bias)
        elif module is self:
            init.zeros_(module.input_bias)

    def set_item_text_embeddings(self, embeddings: torch.Tensor) -> None:
        """Store the catalogue's text embeddings (num_items, text size) the meta-network reads."""
        if self.meta_network is None:
            raise ValueError("this Mult-VAE has no meta-network (config.text_embedding_size = 0)")
        expected = tuple(self.item_text_embeddings.shape)
        if tuple(embeddings.shape) != expected:
            raise ValueError(f"item text embeddings must be {expected}, got {tuple(embeddings.shape)}")
        self.item_text_embeddings.copy_(embeddings.to(self.item_text_embeddings))

    def _check_items(self, item_ids: torch.Tensor) -> None:
        # The bounds check reads a value back from the device: on CPU only (on a GPU it would stall every step).
        if item_ids.device.type == "cpu" and item_ids.numel() and int(item_ids.max()) >= self.config.num_items:
            raise ValueError(
                f"item index {int(item_ids.max())} is outside the catalogue of {self.config.num_items} items; "
                "index items 0..num_items-1 as the data set that trained the model does"
            )

    def input_weights(self, item_ids: torch.Tensor) -> torch.Tensor:
        """Per-item weights of the multi-hot input: 0 for padding, the dropout mask in training."""
        present = (item_ids >= 0).float()
        if self.training and self.config.dropout > 0:
            keep = torch.rand_like(present) >= self.config.dropout
            return present * keep / (1.0 - self.config.dropout)
        return present

    def encode(
        self, item_ids: torch.Tensor, user_text_embeddings: torch.Tensor | None = None
    ) -> tuple[DiagonalGaussian, DiagonalGaussian, DiagonalGaussian | None]:
        """(posterior, collaborative, language) Gaussians of each user's item set."""
        self._check_items(item_ids)
        weights = self.input_weights(item_ids)
        safe = item_ids.clamp_min(0)
        hidden = torch.tanh(self.input_layer(safe, per_sample_weights=weights) + self.input_bias)
        collaborative = self.collaborative_head(hidden)
        if self.meta_network is None:
            return collaborative, collaborative, None
        # the same weighted sum as the input layer, over the frozen text table: no (B, N, d) gather
        text = F.embedding_bag(safe, self.item_text_embeddings, per_sample_weights=weights, mode="sum")
        if user_text_embeddings is not None:
            text = text + user_text_embeddings
        language = self.meta_network(text)
        posterior = collaborative + language if self.config.combine_posteriors else collaborative
        return posterior, collaborative, language

    def forward(
        self,
        item_ids: torch.Tensor,
        user_text_embeddings: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        **kwargs,
    ) -> MultVAEOutput:
        """Encode, draw ``z`` (reparameterised in training, the mean in eval), decode.

        ``labels`` (B, M) the items whose likelihood is the loss, padded with -1 (default: ``item_ids``,
        the VAE's reconstruction of its own input).
        """
        posterior, collaborative, language = self.encode(item_ids, user_text_embeddings)
        logits = self.decoder(posterior.sample(self.training))
        targets = item_ids if labels is None else labels
        log_probs = F.log_softmax(logits.float(), dim=-1).gather(1, targets.clamp_min(0))
        loss = -(log_probs * (targets >= 0)).sum(dim=1).mean()
        return MultVAEOutput(
            loss=loss, logits=logits, posterior=posterior, collaborative=collaborative, language=language
        )

    @torch.no_grad()
    def recommend(
        self,
        item_sets: list[list[int]],
        top_k: int = 20,
        exclude: list[list[int]] | None = None,
        batch_size: int = 1024,
    ) -> Recommendations:
        """Top-``top_k`` item indices per user from the posterior mean, skipping ``exclude`` (default: the inputs).

        Full ranking over the catalogue: every item not excluded is a candidate, so a list never
        repeats an item and never shows one the user already has.
        """
        top_k = check_count(top_k, "top_k", "items")
        item_sets = check_histories(item_sets, self.config.num_items, name="item_sets")
        exclude = item_sets if exclude is None else exclude
        was_training = self.training
        if was_training:  # walking every module costs ~10% of a batch-1 request
            self.eval()
        ranked, scores = [], []
        for start in range(0, len(item_sets), batch_size):
            items = pad_item_sets(item_sets[start : start + batch_size]).to(self.device)
            logits = exclude_items(self(items).logits.float(), exclude[start : start + batch_size])
            top = logits.topk(min(top_k, logits.size(1)), dim=1)
            ranked.append(top.indices.cpu())
            scores.append(top.values.cpu())
        if was_training:
            self.train()
        return Recommendations(items=torch.cat(ranked), scores=torch.cat(scores))
