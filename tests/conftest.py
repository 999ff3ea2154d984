"""Shared fixtures: real Scientific data, real MiniLM embeddings of its titles, a fitted RQ-VAE.

Everything is built once per session from the shipped data (no mocks, nothing downloaded).
"""

from __future__ import annotations

import atexit
import os
import shutil
import socket
import tempfile

# Hub round trips (tests/test_hub.py) run against tests/hub_server.py on a free local port.
# huggingface_hub reads these once, when it is first imported, so they are set before anything
# imports it. HF_HUB_OFFLINE is removed (the Makefile exports it) or every Hub call would be refused;
# nothing else goes online: the MiniLM encoder loads from its package path (training/embeddings.py)
# and every other test loads models from local directories.
with socket.socket() as _probe:
    _probe.bind(("127.0.0.1", 0))
    HUB_PORT = _probe.getsockname()[1]
HUB_TOKEN = "hf_sidrec_test_write_token"
HUB_USER = "sidrec-tester"
os.environ["HF_ENDPOINT"] = f"http://127.0.0.1:{HUB_PORT}"
os.environ["HF_TOKEN"] = HUB_TOKEN
os.environ["HF_HOME"] = tempfile.mkdtemp(prefix="sidrec-hf-home-")  # empty Hub and module caches
atexit.register(shutil.rmtree, os.environ["HF_HOME"], ignore_errors=True)
for _name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_MODULES_CACHE"):
    os.environ.pop(_name, None)
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402

import sidrec  # noqa: E402,F401  (Auto registration)

ROOT = Path(__file__).resolve().parents[1]
SCIENTIFIC = ROOT / "examples" / "data" / "amazon2018_scientific_5core"
BEAUTY = ROOT / "examples" / "data" / "amazon_beauty_2014_5core"


def load_benchmark_script(name: str):
    """``benchmarks/<name>.py`` as a module: the scripts are not a package and import their siblings by name."""
    import importlib.util
    import sys

    sys.path.insert(0, str(ROOT / "benchmarks"))
    spec = importlib.util.spec_from_file_location(f"sidrec_benchmarks_{name}", ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


CACHE = ROOT / ".cache" / "sidrec" / "embeddings"

torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture(scope="session")
def scientific():
    from sidrec.training.data import DataConfig, load_sequential_data

    return load_sequential_data(DataConfig(path=str(SCIENTIFIC), max_history=20), verbose=False)


@pytest.fixture(scope="session")
def title_embeddings(scientific):
    """MiniLM embeddings of every Scientific title (short sequences keep this to seconds)."""
    from sidrec.training.embeddings import embed_texts

    return embed_texts(scientific.item_titles, max_seq_length=32, cache_dir=str(CACHE), show_progress_bar=False)


@pytest.fixture(scope="session")
def fitted(title_embeddings):
    from sidrec.tokenization.configuration_quantizer import SemanticIDQuantizerConfig
    from sidrec.training.fit_quantizer import fit_quantizer

    config = SemanticIDQuantizerConfig(
        input_dim=title_embeddings.size(1), hidden_dims=[128, 64], latent_dim=16, num_levels=3, codebook_size=32
    )
    # 30 epochs: at 15 the largest group of identical codes sits at the collision level's limit of 32 and
    # crosses it on some CPUs (35 items on an AMD EPYC); at 30 it is 26 items, collision rate 42%.
    return fit_quantizer(title_embeddings, config, epochs=30, batch_size=512, seed=0)


@pytest.fixture(scope="session")
def tokenizer(fitted):
    from sidrec import SemanticIDTokenizer

    return SemanticIDTokenizer(item_codes=fitted.codes, num_levels=4, codebook_size=32, max_history=20)


def tiny_config(tokenizer, **overrides):
    from sidrec import SIDT5Config

    values = dict(
        num_code_levels=tokenizer.num_levels,
        codebook_size=tokenizer.codebook_size,
        num_user_buckets=tokenizer.num_user_buckets,
        d_model=32,
        d_kv=16,
        num_heads=2,
        d_ff=64,
        num_layers=2,
        num_decoder_layers=2,
        dropout_rate=0.0,
    )
    values.update(overrides)
    return SIDT5Config(**values)


@pytest.fixture(scope="session")
def tiny_model(tokenizer):
    from sidrec import SIDT5ForConditionalGeneration

    torch.manual_seed(0)
    model = SIDT5ForConditionalGeneration(tiny_config(tokenizer)).eval()
    model.generation_config.num_beams = 10
    return model


@pytest.fixture(scope="session")
def hub_server():
    """The local Hub-compatible server that HF_ENDPOINT points at, for the whole session."""
    from .hub_server import HubServer

    server = HubServer(port=HUB_PORT, token=HUB_TOKEN, user=HUB_USER).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def sasrec_run(tmp_path_factory):
    """A tiny SASRec trained through the recipe on the tiny Scientific slice: a model and the collaborative
    embeddings LETTER and the collaborative SIDs read."""
    from sidrec.training.pipeline import run
    from sidrec.training.recipe import load_recipe

    from .test_pipeline import TINY, recipe_file

    out = tmp_path_factory.mktemp("sasrec")
    overrides = [o for o in TINY if not o.startswith(("quantizer.", "model."))]
    overrides += ["sasrec.enabled=true", "sasrec.hidden_size=32", "training.epochs=3", f"output_dir={out}"]
    metrics = run(load_recipe(recipe_file(out), overrides))
    return out, metrics
