"""Configuration of Mult-VAE, the collaborative base model of DMRec's own experiments."""

from __future__ import annotations

from transformers import PretrainedConfig


class MultVAEConfig(PretrainedConfig):
    """Mult-VAE (Liang et al., WWW 2018) with DMRec's optional language-space meta-network.

    Defaults are the shapes of DMRec's code: ``[num_items, 600, 200, 600, num_items]``, a 600-unit
    meta-network, input dropout 0.3. ``text_embedding_size`` = 0 builds the plain Mult-VAE; > 0 adds
    the meta-network ``p(z | s)`` over the item text embeddings, which the model keeps as a buffer.

    Args:
        num_items: catalogue size (input and output width).
        hidden_size: the encoder's and decoder's hidden layer.
        latent_size: dimension of ``z``.
        dropout: input dropout on the user's interaction vector (the paper: 0.3 / 0.3 / 0.2).
        text_embedding_size: size of the item text embeddings (384 for MiniLM), 0 for none.
        meta_hidden_size: the meta-network's hidden layer.
        combine_posteriors: decode from ``q + p`` (means and log-variances added), as the authors'
            code does; False decodes from the collaborative head alone.
    """

    model_type = "dmrec_mult_vae"

    def __init__(
        self,
        num_items: int = 1,
        hidden_size: int = 600,
        latent_size: int = 200,
        dropout: float = 0.3,
        text_embedding_size: int = 0,
        meta_hidden_size: int = 600,
        combine_posteriors: bool = True,
        **kwargs,
    ):
        self.num_items = num_items
        self.hidden_size = hidden_size
        self.latent_size = latent_size
        self.dropout = dropout
        self.text_embedding_size = text_embedding_size
        self.meta_hidden_size = meta_hidden_size
        self.combine_posteriors = combine_posteriors
        super().__init__(**kwargs)
