"""RQ-VAE quantizer: item content embedding -> one code per residual level.

The quantizer is a ``PreTrainedModel`` so that it saves, loads and travels to the Hub like any other
Hugging Face model. Its code assignment is a single function, :meth:`SemanticIDQuantizer.assign`,
with a switch between deterministic nearest-code look-up (TIGER) and Gumbel-softmax assignment
(soft, or straight-through hard; DIGER), so every method shares one code path.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel
from transformers.utils import ModelOutput

from .balanced_assignment import balanced_codes, centre_distances
from .configuration_quantizer import SemanticIDQuantizerConfig
from .kmeans import kmeans

ASSIGNMENT_MODES = ("nearest", "gumbel")


@dataclass
class QuantizerOutput(ModelOutput):
    """What one assignment returns.

    Attributes:
        codes: (B, L) chosen code per level (argmax of the possibly noisy assignment).
        logits: (B, L, K) the noise-free logits ``-distance / distance_scale`` (a caller with its own
            temperature, such as SODA, takes ``softmax(logits / t)``).
        probs: (B, L, K) per-level soft distributions ``softmax(-distance / (scale * tau))`` without noise;
            differentiable with respect to the encoder and the codebooks (SODA's item distributions).
        quantized: (B, d) sum of the chosen code vectors, with a straight-through path to the latent.
        latent: (B, d) encoder output.
        reconstruction: (B, input_dim) decoder output, or None when not decoded.
        loss: total = reconstruction_loss + quantization_loss.
        reconstruction_loss: MSE between reconstruction and input.
        quantization_loss: sum over levels of ``||sg[r] - e||^2 + beta ||r - sg[e]||^2``.
        assignment: (B, L, K) the one-hot (hard) or soft weights used to build ``quantized``.
        deterministic_codes: (B, L) the noise-free codes on the same residuals: Sinkhorn-balanced on the
            levels the config balances, nearest elsewhere (FrqUD's usage statistics are built from them).
    """

    codes: torch.LongTensor | None = None
    logits: torch.FloatTensor | None = None
    probs: torch.FloatTensor | None = None
    quantized: torch.FloatTensor | None = None
    latent: torch.FloatTensor | None = None
    reconstruction: torch.FloatTensor | None = None
    loss: torch.FloatTensor | None = None
    reconstruction_loss: torch.FloatTensor | None = None
    quantization_loss: torch.FloatTensor | None = None
    assignment: torch.FloatTensor | None = None
    deterministic_codes: torch.LongTensor | None = None


def _mlp(dims: list[int], dropout: float) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (d_in, d_out) in enumerate(zip(dims[:-1], dims[1:])):
        layers.append(nn.Linear(d_in, d_out))
        if i < len(dims) - 2:
            layers.append(nn.ReLU())
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers)


class SemanticIDQuantizer(PreTrainedModel):
    """Residual-quantised VAE (TIGER) over item content embeddings.

    ``forward(embeddings)`` encodes, assigns codes level by level on the residual, decodes and
    returns the losses; ``encode_codes`` gives deterministic codes for a whole catalogue.
    """

    config_class = SemanticIDQuantizerConfig
    base_model_prefix = "quantizer"
    main_input_name = "embeddings"

    def __init__(self, config: SemanticIDQuantizerConfig):
        super().__init__(config)
        dims = [config.input_dim, *config.hidden_dims, config.latent_dim]
        identity = getattr(config, "encoder_type", "mlp") == "identity"  # RQ-KMeans: codes of the embeddings
        self.encoder = nn.Identity() if identity else _mlp(dims, config.dropout)
        self.decoder = nn.Identity() if identity else _mlp(dims[::-1], config.dropout)
        self.codebooks = nn.Parameter(torch.randn(config.num_levels, config.codebook_size, config.latent_dim) * 0.1)
        # Logits are -distance / distance_scale: in units of the catalogue's typical gap between an item's
        # nearest and second-nearest code (see calibrate_distance_scale); 1 = raw squared distances.
        self.register_buffer("distance_scale", torch.ones(config.num_levels))
        self.post_init()

    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.xavier_uniform_(module.weight)
            if module.bias is not None:
                nn.init.zeros_(module.bias)

    @torch.no_grad()
    def init_codebooks_kmeans(self, embeddings: torch.Tensor, iterations: int = 20, seed: int = 0) -> None:
        """Set every level's codebook to k-means centroids of that level's residuals.

        TIGER initialises with k-means on the first batch to avoid dead codes; we use the whole
        catalogue when it fits, which is the same idea with less variance.
        """
        generator = torch.Generator().manual_seed(seed)
        residual = self.encoder(embeddings)
        for level in range(self.config.num_levels):
            centers = kmeans(residual, self.config.codebook_size, iterations, generator=generator)
            self.codebooks.data[level] = centers
            nearest = torch.cdist(residual, centers).argmin(dim=1)
            residual = residual - centers[nearest]

    @torch.no_grad()
    def level_residuals(self, embeddings: torch.Tensor) -> list[torch.Tensor]:
        """The residual (B, d) each level quantises, level 0 first, under nearest-code assignment."""
        residual, residuals = self.encoder(embeddings), []
        for level in range(self.config.num_levels):
            residuals.append(residual)
            residual = residual - self.codebooks[level][self.distances(residual, level).argmin(dim=1)]
        return residuals

    @torch.no_grad()
    def restart_codes(self, level: int, codes: torch.LongTensor, embeddings: torch.Tensor, generator=None) -> None:
        """Re-seed ``codes`` of ``level`` with residuals of random rows of ``embeddings`` at that level.

        A code that no item chooses receives no gradient from the quantisation loss and stays dead for the
        rest of the fit; moving it onto a real residual gives it items again (the dead-code restart of
        Jukebox and of ``vector-quantize-pytorch``).
        """
        residual = self.level_residuals(embeddings)[level]
        rows = torch.randint(residual.size(0), (len(codes),), generator=generator)
        self.codebooks.data[level, codes] = residual[rows]

    @torch.no_grad()
    def calibrate_distance_scale(self, embeddings: torch.Tensor) -> torch.Tensor:
        """Set each level's logit unit to the median gap between nearest and second-nearest code.

        Squared distances depend on the embedding model and the latent's scale: with normalised
        384-d MiniLM inputs and a 32-d latent, the typical gap is about 0.01, so unit Gumbel noise
        re-draws 98% of the codes and ``softmax(-d / tau)`` is almost uniform. In gap units, ``tau``
        and the noise scale mean the same for any embedding and at every level: unit noise flips
        the codes of ambiguous items, not of all items. Returns the (L,) scales.
        """
        residual = self.encoder(embeddings)
        for level in range(self.config.num_levels):
            distances = self.distances(residual, level)
            nearest_two = distances.topk(2, dim=1, largest=False).values
            self.distance_scale[level] = (nearest_two[:, 1] - nearest_two[:, 0]).median().clamp_min(1e-12)
            residual = residual - self.codebooks[level][distances.argmin(dim=1)]
        return self.distance_scale.clone()

    def distances(self, residual: torch.Tensor, level: int) -> torch.Tensor:
        """Squared L2 distance (B, K) from each residual to each code of ``level``."""
        codebook = self.codebooks[level]
        return (
            residual.pow(2).sum(-1, keepdim=True) - 2 * residual @ codebook.t() + codebook.pow(2).sum(-1)[None, :]
        ).clamp_min(0)

    def assign(
        self,
        latent: torch.Tensor,
        mode: str = "nearest",
        hard: bool = True,
        temperature: float | None = None,
        noise_scale: float | torch.Tensor = 1.0,
        generator: torch.Generator | None = None,
        raw_distance_gradient: bool = False,
        previous_codes: torch.LongTensor | None = None,
        hysteresis: float = 0.0,
    ) -> QuantizerOutput:
        """Assign codes to ``latent`` (B, d), level by level on the residual.

        Args:
            mode: ``"nearest"`` picks the closest code (TIGER); ``"gumbel"`` samples with
                Gumbel-softmax over logits ``-distance / distance_scale`` (DIGER).
            hard: with ``"gumbel"``, use the one-hot of the sampled code in the forward pass and the
                soft probabilities in the backward pass (straight-through); otherwise soft weights.
            temperature: ``tau``; defaults to ``config.code_temperature``.
            noise_scale: multiplies the Gumbel noise: a scalar, an (L,) vector per level (SDUD's
                sigma), or a (B, L) / (B, 1) matrix per sample (FrqUD's hot/cold switch).
            raw_distance_gradient: keep the calibrated logits in the forward pass but send gradients
                back as if the logits were the raw ``-distance``. The calibration divides by a scale
                as small as 1e-4 at deep levels, which would otherwise multiply a downstream loss's
                pull on the codebooks by up to 1e4 against the quantiser's own loss (joint training
                then collapses the codes; README, DIGER).
            previous_codes: (B, L) codes the items hold now; with ``hysteresis`` > 0 an item keeps its
                noise-free code at a level unless the new one's logit is higher by more than ``hysteresis``
                (logit units): assignment hysteresis, against codes that flip back and forth.
        Returns:
            A :class:`QuantizerOutput` with codes, probs, quantized, latent, quantization_loss and
            assignment filled in.
        """
        if mode not in ASSIGNMENT_MODES:
            raise ValueError(f"Unknown assignment mode {mode!r}; use one of {ASSIGNMENT_MODES}.")
        tau = self.config.code_temperature if temperature is None else temperature
        beta = self.config.commitment_beta
        residual = latent
        quantized = torch.zeros_like(latent)
        codes, all_logits, probs, weights = [], [], [], []
        quantization_loss = latent.new_zeros(())
        noise_scale = torch.as_tensor(noise_scale, dtype=latent.dtype, device=latent.device)
        if noise_scale.dim() == 1:  # (L,) per level -> (1, L); per-sample scales come as (B, L) or (B, 1)
            noise_scale = noise_scale[None, :]
        if noise_scale.dim() == 2 and noise_scale.size(1) == 1:
            noise_scale = noise_scale.expand(-1, self.config.num_levels)
        deterministic = []
        for level in range(self.config.num_levels):
            codebook = self.codebooks[level]
            distances = self.distances(residual, level)
            logits = self.level_logits(distances, level, raw_distance_gradient)
            all_logits.append(logits)
            probs.append(F.softmax(logits / tau, dim=-1))
            if self.config.balanced_level(level):
                steady = balanced_codes(distances, self.config.sinkhorn_epsilon, self.config.sinkhorn_iterations)
            else:
                steady = logits.argmax(dim=-1)
            if previous_codes is not None and hysteresis > 0:
                held = previous_codes[:, level]
                gain = logits.gather(1, steady[:, None]) - logits.gather(1, held[:, None])
                steady = torch.where(gain.squeeze(1) > hysteresis, steady, held)
            deterministic.append(steady)
            if mode == "nearest":
                index = steady
                weight = F.one_hot(index, codebook.size(0)).to(latent.dtype)
            else:
                uniform = torch.rand(logits.shape, generator=generator, device=logits.device, dtype=logits.dtype)
                gumbel = -torch.log((-torch.log(uniform.clamp_min(1e-10))).clamp_min(1e-10))
                scale = noise_scale[..., level].unsqueeze(-1) if noise_scale.dim() else noise_scale
                soft = F.softmax((logits + scale * gumbel) / tau, dim=-1)
                index = soft.argmax(dim=-1)
                if self.config.balanced_level(level):  # samples without noise keep the balanced code
                    noisy = (torch.as_tensor(scale) > 0).expand(*index.shape, 1).squeeze(-1)
                    index = torch.where(noisy, index, steady)
                if hard:
                    one_hot = F.one_hot(index, codebook.size(0)).to(soft.dtype)
                    weight = one_hot - soft.detach() + soft
                else:
                    weight = soft
            chosen = weight @ codebook
            quantization_loss = (
                quantization_loss + F.mse_loss(chosen, residual.detach()) + beta * F.mse_loss(residual, chosen.detach())
            )
            codes.append(index)
            weights.append(weight)
            quantized = quantized + chosen
            residual = residual - chosen
        # Straight-through estimator from the quantised vector back to the latent (VQ-VAE).
        quantized = latent + (quantized - latent).detach() if mode == "nearest" else quantized
        return QuantizerOutput(
            codes=torch.stack(codes, dim=1),
            logits=torch.stack(all_logits, dim=1),
            probs=torch.stack(probs, dim=1),
            quantized=quantized,
            latent=latent,
            quantization_loss=quantization_loss,
            assignment=torch.stack(weights, dim=1),
            deterministic_codes=torch.stack(deterministic, dim=1),
        )

    def level_logits(self, distances: torch.Tensor, level: int, raw_distance_gradient: bool = False) -> torch.Tensor:
        """Code logits (B, K) of one level from its squared distances, in the config's ``logit_mode``.

        ``calibrated``: ``-distance / distance_scale``; ``raw_distance_gradient`` keeps that forward value
        and sends gradients back in raw distance units (see :meth:`assign`). ``centred``: minus the
        batch's distances min-max centred into [-1, 1] (DIGER's reference code), whatever their scale.
        """
        if self.config.logit_mode == "centred":
            return -centre_distances(distances)
        logits = -distances / self.distance_scale[level]
        if raw_distance_gradient:  # forward value unchanged (adds an exact zero), gradient in raw units
            logits = logits.detach() - (distances - distances.detach())
        return logits

    def forward(self, embeddings: torch.Tensor, **assign_kwargs) -> QuantizerOutput:
        """Encode, assign (see :meth:`assign` for the switches), decode, and add up the losses."""
        return self.decode(embeddings, self.assign(self.encoder(embeddings), **assign_kwargs))

    def decode(self, embeddings: torch.Tensor, output: QuantizerOutput) -> QuantizerOutput:
        """Reconstruct ``embeddings`` from an assignment's quantised vector and fill in the losses.

        Split from :meth:`forward` so that a caller that must look at the latent before assigning
        (DIGER's FrqUD decides the noise from the level-0 nearest code) still shares every loss.
        """
        output.reconstruction = self.decoder(output.quantized)
        output.reconstruction_loss = F.mse_loss(output.reconstruction, embeddings)
        output.loss = output.reconstruction_loss + output.quantization_loss
        return output

    @torch.no_grad()
    def first_level_codes(self, latent: torch.Tensor) -> torch.LongTensor:
        """Nearest level-0 code (B,) of ``latent``: the one level whose residual is the latent itself."""
        return self.distances(latent, 0).argmin(dim=-1)

    @torch.no_grad()
    def encode_codes(
        self,
        embeddings: torch.Tensor,
        batch_size: int = 4096,
        previous_codes: torch.LongTensor | None = None,
        hysteresis: float = 0.0,
    ) -> torch.LongTensor:
        """Deterministic codes (N, L) for a whole catalogue, in eval mode.

        Nearest codes, Sinkhorn-balanced ones on the levels the config balances (within each chunk of
        ``batch_size`` items), and sticky ones with ``previous_codes`` and ``hysteresis`` (see :meth:`assign`).
        """
        was_training = self.training
        if was_training:  # walking every module costs ~10% of a batch-1 request
            self.eval()
        chunks = []
        for start in range(0, embeddings.size(0), batch_size):
            held = None if previous_codes is None else previous_codes[start : start + batch_size]
            latent = self.encoder(embeddings[start : start + batch_size])
            chunks.append(self.assign(latent, previous_codes=held, hysteresis=hysteresis).codes)
        if was_training:
            self.train()
        return torch.cat(chunks, dim=0)
