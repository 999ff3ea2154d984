"""sidrec: generative recommendation with semantic IDs, native to the Hugging Face stack.

Importing ``sidrec`` registers its configurations, models and tokenizer with the ``Auto*`` classes,
so ``AutoModel.from_pretrained(dir)`` and ``AutoTokenizer.from_pretrained(dir)`` work without
``trust_remote_code``. Saved models also carry their code (``register_for_auto_class``), so they
load with ``trust_remote_code=True`` where sidrec is not installed. It also registers the
``sequential-recommendation`` task with ``transformers.pipelines.PIPELINE_REGISTRY``; every saved run's model
directory carries that pipeline's code too (``pipeline(model=dir, trust_remote_code=True)``).
"""

from transformers import AutoConfig, AutoModel, AutoModelForSeq2SeqLM, AutoTokenizer
from transformers.pipelines import PIPELINE_REGISTRY

from .modeling.configuration_dmrec_t5 import DMRecT5Config
from .modeling.configuration_mult_vae import MultVAEConfig
from .modeling.configuration_sasrec import SASRecConfig
from .modeling.configuration_sid_t5 import SIDT5Config
from .modeling.logits_process_sid import PrefixTrieLogitsProcessor
from .modeling.modeling_dmrec_t5 import DMRecT5ForConditionalGeneration
from .modeling.modeling_mult_vae import MultVAEForCollaborativeFiltering
from .modeling.modeling_sasrec import SASRecForSequentialRecommendation
from .modeling.modeling_sid_t5 import Recommendations, SIDT5ForConditionalGeneration
from .modeling.pipeline_sequential_recommendation import TASK as SEQUENTIAL_RECOMMENDATION
from .modeling.pipeline_sequential_recommendation import SequentialRecommendationPipeline
from .tokenization.configuration_quantizer import SemanticIDQuantizerConfig
from .tokenization.modeling_quantizer import SemanticIDQuantizer
from .tokenization.prefix_trie import PrefixTrie
from .tokenization.tokenization_semantic_id import SemanticIDTokenizer

__version__ = "0.1.0"

AutoConfig.register(SIDT5Config.model_type, SIDT5Config, exist_ok=True)
AutoModel.register(SIDT5Config, SIDT5ForConditionalGeneration, exist_ok=True)
AutoModelForSeq2SeqLM.register(SIDT5Config, SIDT5ForConditionalGeneration, exist_ok=True)
AutoTokenizer.register(SIDT5Config, tokenizer_class=SemanticIDTokenizer, exist_ok=True)
AutoConfig.register(DMRecT5Config.model_type, DMRecT5Config, exist_ok=True)
AutoModel.register(DMRecT5Config, DMRecT5ForConditionalGeneration, exist_ok=True)
AutoModelForSeq2SeqLM.register(DMRecT5Config, DMRecT5ForConditionalGeneration, exist_ok=True)
AutoTokenizer.register(DMRecT5Config, tokenizer_class=SemanticIDTokenizer, exist_ok=True)
AutoConfig.register(MultVAEConfig.model_type, MultVAEConfig, exist_ok=True)
AutoModel.register(MultVAEConfig, MultVAEForCollaborativeFiltering, exist_ok=True)
AutoConfig.register(SASRecConfig.model_type, SASRecConfig, exist_ok=True)
AutoModel.register(SASRecConfig, SASRecForSequentialRecommendation, exist_ok=True)
AutoConfig.register(SemanticIDQuantizerConfig.model_type, SemanticIDQuantizerConfig, exist_ok=True)
AutoModel.register(SemanticIDQuantizerConfig, SemanticIDQuantizer, exist_ok=True)

# Saved checkpoints carry their own code so they load with trust_remote_code=True without sidrec.
SIDT5Config.register_for_auto_class()
SIDT5ForConditionalGeneration.register_for_auto_class("AutoModelForSeq2SeqLM")
DMRecT5Config.register_for_auto_class()
DMRecT5ForConditionalGeneration.register_for_auto_class("AutoModelForSeq2SeqLM")
MultVAEConfig.register_for_auto_class()
MultVAEForCollaborativeFiltering.register_for_auto_class("AutoModel")
SASRecConfig.register_for_auto_class()
SASRecForSequentialRecommendation.register_for_auto_class("AutoModel")
SemanticIDTokenizer.register_for_auto_class("AutoTokenizer")

# pipeline("sequential-recommendation", model=...) with the installed code; AutoModel loads every sequential model.
if SEQUENTIAL_RECOMMENDATION not in PIPELINE_REGISTRY.supported_tasks:
    PIPELINE_REGISTRY.register_pipeline(
        SEQUENTIAL_RECOMMENDATION, pipeline_class=SequentialRecommendationPipeline, pt_model=AutoModel
    )


def load_recommender(directory: str):
    """Load a saved run's model directory as a :class:`sidrec.recommender.Recommender`."""
    from .recommender import Recommender

    return Recommender.from_pretrained(directory)


__all__ = [
    "DMRecT5Config",
    "DMRecT5ForConditionalGeneration",
    "MultVAEConfig",
    "MultVAEForCollaborativeFiltering",
    "PrefixTrie",
    "PrefixTrieLogitsProcessor",
    "Recommendations",
    "SASRecConfig",
    "SASRecForSequentialRecommendation",
    "SIDT5Config",
    "SIDT5ForConditionalGeneration",
    "SemanticIDQuantizer",
    "SemanticIDQuantizerConfig",
    "SemanticIDTokenizer",
    "SequentialRecommendationPipeline",
    "load_recommender",
]
