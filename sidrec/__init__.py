"""sidrec: generative recommendation with semantic IDs, native to the Hugging Face stack.

Importing ``sidrec`` registers its configurations, models and tokenizer with the ``Auto*`` classes,
so ``AutoModel.from_pretrained(dir)`` and ``AutoTokenizer.from_pretrained(dir)`` work without
``trust_remote_code``. Saved models also carry their code (``register_for_auto_class``), so they
load with ``trust_remote_code=True`` where sidrec is not installed.
"""

from transformers import AutoConfig, AutoModel, AutoModelForSeq2SeqLM, AutoTokenizer

from .modeling.configuration_sid_t5 import SIDT5Config
from .modeling.logits_process_sid import PrefixTrieLogitsProcessor
from .modeling.modeling_sid_t5 import Recommendations, SIDT5ForConditionalGeneration
from .tokenization.configuration_quantizer import SemanticIDQuantizerConfig
from .tokenization.modeling_quantizer import SemanticIDQuantizer
from .tokenization.prefix_trie import PrefixTrie
from .tokenization.tokenization_semantic_id import SemanticIDTokenizer

__version__ = "0.1.0"

AutoConfig.register(SIDT5Config.model_type, SIDT5Config, exist_ok=True)
AutoModel.register(SIDT5Config, SIDT5ForConditionalGeneration, exist_ok=True)
AutoModelForSeq2SeqLM.register(SIDT5Config, SIDT5ForConditionalGeneration, exist_ok=True)
AutoTokenizer.register(SIDT5Config, tokenizer_class=SemanticIDTokenizer, exist_ok=True)
AutoConfig.register(SemanticIDQuantizerConfig.model_type, SemanticIDQuantizerConfig, exist_ok=True)
AutoModel.register(SemanticIDQuantizerConfig, SemanticIDQuantizer, exist_ok=True)

# Saved checkpoints carry their own code so they load with trust_remote_code=True without sidrec.
SIDT5Config.register_for_auto_class()
SIDT5ForConditionalGeneration.register_for_auto_class("AutoModelForSeq2SeqLM")
SemanticIDTokenizer.register_for_auto_class("AutoTokenizer")


def load_recommender(directory: str):
    """Load a saved run's model directory as a :class:`sidrec.training.recommender.Recommender`."""
    from .training.recommender import Recommender

    return Recommender.from_pretrained(directory)


__all__ = [
    "PrefixTrie",
    "PrefixTrieLogitsProcessor",
    "Recommendations",
    "SIDT5Config",
    "SIDT5ForConditionalGeneration",
    "SemanticIDQuantizer",
    "SemanticIDQuantizerConfig",
    "SemanticIDTokenizer",
    "load_recommender",
]
