"""Configuration of the RQ-VAE that turns item content embeddings into semantic IDs."""

from __future__ import annotations

from transformers import PretrainedConfig

LOGIT_MODES = ("calibrated", "centred")
ENCODER_TYPES = ("mlp", "identity")


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
        logit_mode: ``"calibrated"`` (logits ``-distance / distance_scale``, the typical nearest-vs-second gap)
            or ``"centred"`` (each batch's distances min-max centred into [-1, 1], DIGER's and LETTER's code).
        sinkhorn_epsilon: > 0 makes the noise-free codes of ``sinkhorn_levels`` the Sinkhorn-balanced
            assignment of each batch (``tokenization.balanced_assignment``; 0.003 in DIGER and LETTER);
            0 keeps nearest codes.
        sinkhorn_iterations: Sinkhorn-Knopp iterations (50 in DIGER and LETTER).
        sinkhorn_levels: the levels that are balanced; ``None`` = all (DIGER), ``[-1]`` = the last (LETTER).
        encoder_type: ``"mlp"`` (the RQ-VAE's encoder and decoder) or ``"identity"`` (no VAE: the codebooks
            quantise the content embeddings themselves, RQ-KMeans as GRID and cornac offer it; then
            ``latent_dim`` must equal ``input_dim``).
    """

    model_type = "sid_rqvae"

    def balanced_level(self, level: int) -> bool:
        """Whether ``level``'s noise-free codes are Sinkhorn-balanced."""
        if self.sinkhorn_epsilon <= 0:
            return False
        return self.sinkhorn_levels is None or level in {chosen % self.num_levels for chosen in self.sinkhorn_levels}

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
        logit_mode: str = "calibrated",
        sinkhorn_epsilon: float = 0.0,
        sinkhorn_iterations: int = 50,
        sinkhorn_levels: list[int] | None = None,
        encoder_type: str = "mlp",
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
        if logit_mode not in LOGIT_MODES:
            raise ValueError(f"logit_mode must be one of {LOGIT_MODES}, got {logit_mode!r}")
        if sinkhorn_epsilon < 0 or sinkhorn_iterations < 1:
            raise ValueError(
                f"sinkhorn_epsilon must be >= 0 (0 = off) and sinkhorn_iterations >= 1, "
                f"got {sinkhorn_epsilon} and {sinkhorn_iterations}"
            )
        if encoder_type not in ENCODER_TYPES:
            raise ValueError(f"encoder_type must be one of {ENCODER_TYPES}, got {encoder_type!r}")
        if encoder_type == "identity" and latent_dim != input_dim:
            raise ValueError(
                f"an identity encoder quantises the embeddings themselves: latent_dim ({latent_dim}) must equal "
                f"input_dim ({input_dim})"
            )
        self.encoder_type = encoder_type
        self.logit_mode = logit_mode
        self.sinkhorn_epsilon = float(sinkhorn_epsilon)
        self.sinkhorn_iterations = int(sinkhorn_iterations)
        self.sinkhorn_levels = None if sinkhorn_levels is None else [int(level) for level in sinkhorn_levels]
        super().__init__(**kwargs)
