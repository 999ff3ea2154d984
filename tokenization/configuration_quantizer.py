"""Configuration of the RQ-VAE that turns item content embeddings into semantic IDs."""

from __future__ import annotations

from transformers import PretrainedConfig


class SemanticIDQuantizerConfig(PretrainedConfig):
    """Hyper-parameters of :class:`SemanticIDQuantizer`.

    Defaults follow TIGER (Rajput et al., 2023): an MLP encoder down to a 32-d latent, 3 residual
    codebooks of 256 codes, commitment weight 0.25. ``input_dim`` is the text-encoder width (384 for
    the packaged all-MiniLM-L6-v2).

    Args:
        input_dim: width of the item content embeddings.
        hidden_dims: widths of the encoder's hidden layers (the decoder mirrors them).
        latent_dim: width of the quantised latent.
        num_levels: number of residual codebooks (the collision level is added by the tokenizer).
        codebook_size: codes per level.
        commitment_beta: weight of ``||r - sg[e]||^2`` in the quantisation loss.
        code_temperature: ``tau`` in ``softmax(-distance / tau)`` for soft distributions and Gumbel assignment.
        dropout: dropout inside the encoder/decoder MLPs.
    """

    model_type = "sid_rqvae"

    def __init__(
        self,
        input_dim: int = 384,
        hidden_dims: list[int] | None = None,
        latent_dim: int = 32,
        num_levels: int = 3,
        codebook_size: int = 256,
        commitment_beta: float = 0.25,
        code_temperature: float = 1.0,
        dropout: float = 0.0,
        **kwargs,
    ):
        self.input_dim = input_dim
        self.hidden_dims = list(hidden_dims) if hidden_dims is not None else [512, 256, 128]
        self.latent_dim = latent_dim
        self.num_levels = num_levels
        self.codebook_size = codebook_size
        self.commitment_beta = commitment_beta
        self.code_temperature = code_temperature
        self.dropout = dropout
        super().__init__(**kwargs)
