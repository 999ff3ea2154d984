"""Configuration of DMRec-T5: SID-T5 with DMRec's Gaussian heads and language-space meta-network."""

from __future__ import annotations

from .configuration_sid_t5 import SIDT5Config


class DMRecT5Config(SIDT5Config):
    """An :class:`SIDT5Config` plus the shapes of DMRec's latent space.

    Args:
        num_items: catalogue size (rows of the item text-embedding table the model keeps).
        text_embedding_size: size of the item text embeddings (384 for MiniLM).
        latent_size: dimension of ``z``.
        meta_hidden_size: hidden layer of the meta-network ``p(z | s)`` (the paper: 600).
        combine_posteriors: draw ``z`` from ``q + p`` (means and log-variances added), as the
            authors' code does; False draws from the collaborative head alone.
        **kwargs: :class:`SIDT5Config` arguments.
    """

    model_type = "dmrec_t5"

    def __init__(
        self,
        num_items: int = 1,
        text_embedding_size: int = 384,
        latent_size: int = 64,
        meta_hidden_size: int = 600,
        combine_posteriors: bool = True,
        **kwargs,
    ):
        self.num_items = num_items
        self.text_embedding_size = text_embedding_size
        self.latent_size = latent_size
        self.meta_hidden_size = meta_hidden_size
        self.combine_posteriors = combine_posteriors
        super().__init__(**kwargs)
