"""Configuration of SID-T5, the T5 encoder-decoder that generates semantic IDs."""

from __future__ import annotations

from transformers import T5Config

from .served_task import ServedPipelineConfigMixin

NUM_SPECIAL_TOKENS = 3  # <pad>, </s>, <unk>: must match SemanticIDTokenizer


class SIDT5Config(ServedPipelineConfigMixin, T5Config):
    """A ``T5Config`` whose vocabulary is laid out by semantic-ID levels.

    The vocabulary is ``3 special + num_code_levels * codebook_size + num_user_buckets`` and is
    computed here, so that the model and its ``SemanticIDTokenizer`` always agree. Defaults are
    TIGER's recommender (4 + 4 layers, d_model 128, 6 heads of 64, d_ff 1024, dropout 0.1). The beam
    width lives where transformers keeps decoding settings: ``model.generation_config.num_beams``.

    Args:
        num_code_levels: code length including the collision level.
        codebook_size: codes per level.
        num_user_buckets: hashed user tokens (0 = no user token).
    """

    model_type = "sid_t5"

    def __init__(
        self,
        num_code_levels: int = 4,
        codebook_size: int = 256,
        num_user_buckets: int = 0,
        d_model: int = 128,
        d_kv: int = 64,
        d_ff: int = 1024,
        num_layers: int = 4,
        num_decoder_layers: int | None = 4,
        num_heads: int = 6,
        dropout_rate: float = 0.1,
        feed_forward_proj: str = "relu",
        **kwargs,
    ):
        self.num_code_levels = num_code_levels
        self.codebook_size = codebook_size
        self.num_user_buckets = num_user_buckets
        kwargs["vocab_size"] = NUM_SPECIAL_TOKENS + num_code_levels * codebook_size + num_user_buckets
        kwargs.setdefault("pad_token_id", 0)
        kwargs.setdefault("eos_token_id", 1)
        kwargs.setdefault("decoder_start_token_id", 0)
        super().__init__(
            d_model=d_model,
            d_kv=d_kv,
            d_ff=d_ff,
            num_layers=num_layers,
            num_decoder_layers=num_decoder_layers,
            num_heads=num_heads,
            dropout_rate=dropout_rate,
            feed_forward_proj=feed_forward_proj,
            **kwargs,
        )

    @property
    def token_offsets(self) -> list[int]:
        """Token id of code 0 at each level."""
        return [NUM_SPECIAL_TOKENS + level * self.codebook_size for level in range(self.num_code_levels)]
