"""DMRec-T5: next-semantic-ID generation with DMRec's language-space distribution matching.

The encoder reads the user's semantic-ID history as in SID-T5. Two Gaussian heads describe the
user in one latent space: ``q(z | x)`` on the mean-pooled encoder states (the collaborative space)
and the meta-network ``p(z | s)`` on the mean text embedding of the history's items (the language
space). ``z`` (reparameterised in training, the mean at inference) is projected to ``d_model`` and
appended to the encoder states as one extra memory token, so every decoder layer can attend to it
through cross-attention; the rest of the model, the trie-constrained beam search included, is
SID-T5's. The matching loss (MDDM by default) is the ``dmrec`` training objective.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import initialization as init
from transformers.modeling_outputs import BaseModelOutput, Seq2SeqLMOutput

from .configuration_dmrec_t5 import DMRecT5Config
from .gaussian_matching import DiagonalGaussian, GaussianHead, ProbabilisticMetaNetwork
from .modeling_sid_t5 import SIDT5ForConditionalGeneration


@dataclass
class DMRecSeq2SeqLMOutput(Seq2SeqLMOutput):
    """T5's output plus the user's Gaussians (None when ``encoder_outputs`` were passed in, as in ``generate``)."""

    posterior: DiagonalGaussian | None = None
    collaborative: DiagonalGaussian | None = None
    language: DiagonalGaussian | None = None


class DMRecT5ForConditionalGeneration(SIDT5ForConditionalGeneration):
    """SID-T5 whose decoder also attends to a latent user token drawn from DMRec's posterior.

    Training and inference need ``item_index`` (B, S), the item behind each history token, which
    ``SemanticIDTokenizer.encode_histories(..., return_item_index=True)`` and the collator produce;
    :meth:`recommend` asks for it itself.
    """

    config_class = DMRecT5Config
    item_inputs = ("item_index",)
    memory_inputs = ("item_index",)

    def __init__(self, config: DMRecT5Config):
        super().__init__(config)
        self.register_buffer("item_text_embeddings", torch.zeros(config.num_items, config.text_embedding_size))
        self.collaborative_head = GaussianHead(config.d_model, config.latent_size)
        self.meta_network = ProbabilisticMetaNetwork(
            config.text_embedding_size, config.meta_hidden_size, config.latent_size
        )
        self.latent_to_memory = nn.Linear(config.latent_size, config.d_model)
        self.post_init()  # initialises only the modules added here; T5's are already marked done

    def _init_weights(self, module: nn.Module) -> None:
        # The latent token starts as a no-op (zero projection): with a random projection the decoder
        # cross-attends to a unit-variance noise vector from step 0 (z is drawn from a near-prior
        # posterior early on) and, measured on the Scientific demo, learned to ignore it at a cost
        # (README, DMRec). T5's own scheme gives other unknown Linear layers std = initializer_factor
        # (1.0); the DMRec heads get T5's feed-forward rule instead, std = factor / sqrt(fan_in).
        if module is getattr(self, "latent_to_memory", None):
            init.zeros_(module.weight)
            init.zeros_(module.bias)
            return
        if isinstance(module, nn.Linear) and any(module is layer for layer in self._dmrec_linear_layers()):
            init.normal_(module.weight, mean=0.0, std=self.config.initializer_factor * module.in_features**-0.5)
            init.zeros_(module.bias)
            return
        super()._init_weights(module)

    def _dmrec_linear_layers(self) -> list[nn.Linear]:
        parts = [getattr(self, name, None) for name in ("collaborative_head", "meta_network")]
        return [layer for part in parts if part is not None for layer in part.modules() if isinstance(layer, nn.Linear)]

    def set_item_text_embeddings(self, embeddings: torch.Tensor) -> None:
        """Store the catalogue's text embeddings (num_items, text size) the meta-network reads."""
        expected = tuple(self.item_text_embeddings.shape)
        if tuple(embeddings.shape) != expected:
            raise ValueError(
                f"item text embeddings must be {expected} (num_items, text size), got {tuple(embeddings.shape)}"
            )
        self.item_text_embeddings.copy_(embeddings.to(self.item_text_embeddings))

    def user_gaussians(
        self, encoded: torch.Tensor, attention_mask: torch.Tensor, item_index: torch.Tensor
    ) -> tuple[DiagonalGaussian, DiagonalGaussian, DiagonalGaussian]:
        """(posterior, collaborative, language) Gaussians from the encoder states and the history's items."""
        if item_index is None:
            raise ValueError(
                "DMRec-T5 needs item_index (the item behind each history token): encode histories with "
                "tokenizer.encode_histories(..., return_item_index=True) or SemanticIDCollator(item_index=True)"
            )
        # The bounds check reads a value back from the device: on CPU only (on a GPU it would stall every step).
        if item_index.device.type == "cpu" and int(item_index.max()) >= self.config.num_items:
            raise ValueError(
                f"item index {int(item_index.max())} is outside the model's catalogue of {self.config.num_items} items"
            )
        mask = attention_mask[..., None].to(encoded.dtype)
        pooled = (encoded * mask).sum(dim=1) / mask.sum(dim=1).clamp_min(1.0)
        collaborative = self.collaborative_head(pooled)
        present = (item_index >= 0).to(encoded.dtype)[..., None]
        texts = self.item_text_embeddings[item_index.clamp_min(0)].to(encoded.dtype) * present
        text = texts.sum(dim=1) / present.sum(dim=1).clamp_min(1.0)
        language = self.meta_network(F.dropout(text, p=self.config.dropout_rate, training=self.training))
        posterior = collaborative + language if self.config.combine_posteriors else collaborative
        return posterior, collaborative, language

    def _memory_with_latent(
        self, input_ids: torch.LongTensor, attention_mask: torch.LongTensor, item_index: torch.Tensor
    ) -> tuple[torch.Tensor, torch.LongTensor, tuple[DiagonalGaussian, DiagonalGaussian, DiagonalGaussian]]:
        encoded = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        gaussians = self.user_gaussians(encoded, attention_mask, item_index)
        latent_token = self.latent_to_memory(gaussians[0].sample(self.training))[:, None, :]
        memory = torch.cat([encoded, latent_token.to(encoded.dtype)], dim=1)
        mask = torch.cat([attention_mask, attention_mask.new_ones(attention_mask.size(0), 1)], dim=1)
        return memory, mask, gaussians

    def encoder_memory(
        self,
        input_ids: torch.LongTensor,
        attention_mask: torch.LongTensor,
        item_index: torch.Tensor | None = None,
        **item_columns: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.LongTensor]:
        """The encoder's states with the latent token appended (the mean of ``q`` in eval mode)."""
        memory, mask, _ = self._memory_with_latent(input_ids, attention_mask, item_index)
        return memory, mask

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.LongTensor | None = None,
        item_index: torch.Tensor | None = None,
        encoder_outputs=None,
        **kwargs,
    ) -> DMRecSeq2SeqLMOutput:
        """T5's forward over the memory with the latent token; ``encoder_outputs`` given = already appended."""
        gaussians = (None, None, None)
        if encoder_outputs is None:
            memory, attention_mask, gaussians = self._memory_with_latent(input_ids, attention_mask, item_index)
            encoder_outputs = BaseModelOutput(last_hidden_state=memory)
        output = super().forward(attention_mask=attention_mask, encoder_outputs=encoder_outputs, **kwargs)
        posterior, collaborative, language = gaussians
        return DMRecSeq2SeqLMOutput(**output, posterior=posterior, collaborative=collaborative, language=language)
