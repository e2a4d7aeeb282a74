"""Load the classifier under audit, once per process, and check that it can be audited.

``load_model`` returns a ``tasks.model.bundle.ModelBundle``. It resolves a preset name to the preset's
built folder (``tasks.model.presets.ensure_model``, which fine-tunes it on first use), so this module
imports the presets; the explanation methods import only the bundle.

``load_model`` is cached on the (hashable) ``ModelSpec``: tasks pass the spec, never the model, so the
same code runs on threads, processes or a cluster, and each worker loads the weights once.

Safety: weights load only from safetensors unless ``allow_pickle`` is set, and the repository's own
code runs only with ``trust_remote_code``. Attention is computed eagerly: transformers' default
``sdpa`` kernel returns no attention weights. Families whose adapter describes their layers use
``tasks.model.attention_hook``'s eager implementation, which can replace the probabilities inside the forward
pass (interventions) and, in passes that read only the logits, runs torch's fused kernel instead
(``attention_hook.unobserved``); the others use transformers' ``eager``.
"""

from __future__ import annotations

import functools
import hashlib
import os
from pathlib import Path
from typing import Any

import torch

from tasks.config import ModelSpec
from tasks.errors import AuditError
from tasks.model import attention_hook
from tasks.model.adapters import adapter_for
from tasks.model.adapters.base import ModelAdapter
from tasks.model.bundle import ModelBundle
from tasks.model.packed_linear import pack_linears
from tasks.model.presets import PRESETS, ensure_model, read_manifest

HEAD_PREFIXES = ("classifier", "score", "classification_head", "logits_proj", "pre_classifier")
"""Parameter name prefixes of sequence-classification heads across transformers families."""


def resolve_location(spec: ModelSpec) -> tuple[str, dict[str, Any]]:
    """Where to load ``spec`` from: a preset's built folder, a local folder, or a hub id."""
    if spec.name_or_path in PRESETS and not Path(spec.name_or_path).exists():
        folder = ensure_model(PRESETS[spec.name_or_path], progress=print)
        return str(folder), {"kind": "preset", "preset": spec.name_or_path, "path": str(folder)}
    path = Path(spec.name_or_path).expanduser()
    if path.exists():
        if not path.is_dir():
            raise AuditError(
                f"the model path {path} is a file, not a folder",
                "pass the folder written by save_pretrained (it holds config.json and the weights)",
            )
        return str(path), {"kind": "local", "path": str(path.resolve())}
    return spec.name_or_path, {"kind": "hub", "id": spec.name_or_path, "revision": spec.revision or "main"}


@functools.lru_cache(maxsize=4)
def load_model(spec: ModelSpec) -> ModelBundle:
    """Load, check and fingerprint the classifier named by ``spec`` (cached per process).

    Steps: find it (``resolve_location``), read its config and pick the family's adapter, load the
    classifier with eager attention, load and check its tokenizer, move it to the device and precision,
    and check that it returns one attention map per layer.

    Raises:
        AuditError: The model cannot be found, is not a sequence classifier, has no trained head,
            needs pickle or remote code that was not allowed, has no tokenizer, or returns no
            attention weights.
    """
    from transformers import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    location, source = resolve_location(spec)
    common: dict[str, Any] = {"revision": spec.revision, "trust_remote_code": spec.trust_remote_code}
    config = _read_config(location, spec, common)
    adapter = adapter_for(config.model_type)
    model = _load_classifier(location, spec, config.model_type, adapter, common)
    tokenizer = _load_tokenizer(location, spec, model, common)
    _place(model, spec)
    _check_returns_attentions(model, tokenizer, spec)
    labels = tuple(str(model.config.id2label[i]) for i in range(model.config.num_labels))
    source["model_type"] = config.model_type
    source["commit"] = getattr(config, "_commit_hash", None)
    manifest = read_manifest(Path(location)) if Path(location).is_dir() else None
    if manifest is not None:
        source["build_manifest"] = manifest
    return ModelBundle(
        model=model,
        tokenizer=tokenizer,
        adapter=adapter,
        labels=labels,
        fingerprint=weights_fingerprint(location, spec),
        source=source,
    )


def _read_config(location: str, spec: ModelSpec, common: dict[str, Any]) -> Any:
    """The model's ``config.json`` (whose ``model_type`` picks the adapter)."""
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(location, **common)
    except (OSError, ValueError) as error:
        raise _not_found(spec, error) from error


def _load_classifier(
    location: str, spec: ModelSpec, model_type: str, adapter: ModelAdapter, common: dict[str, Any]
) -> Any:
    """The ``*ForSequenceClassification`` model, with the audit's eager attention, refusing a random head.

    Families whose attention the adapter can edit get ``attention_hook.AUDIT_ATTENTION``, the others
    transformers' ``eager``; weights load only from safetensors unless ``spec.allow_pickle``.
    """
    from transformers import AutoModelForSequenceClassification

    attention_hook.register()
    try:
        model, info = AutoModelForSequenceClassification.from_pretrained(
            location,
            attn_implementation=attention_hook.AUDIT_ATTENTION if adapter.editable else "eager",
            use_safetensors=None if spec.allow_pickle else True,
            output_loading_info=True,
            **common,
        )
    except ValueError as error:
        if "Unrecognized configuration class" in str(error):
            raise AuditError(
                f"{spec.name_or_path!r} ({model_type}) has no sequence-classification model class",
                "audit a *ForSequenceClassification checkpoint",
            ) from error
        raise
    except OSError as error:
        if not spec.allow_pickle and "safetensors" in str(error).lower():
            raise AuditError(
                f"{spec.name_or_path!r} has no safetensors weights; its pickle-based weights can run "
                "arbitrary code when loaded",
                "convert the weights to safetensors, or pass --allow-pickle if you trust the source",
            ) from error
        raise _not_found(spec, error) from error
    missing_head = [key for key in info.get("missing_keys", ()) if key.split(".")[0] in HEAD_PREFIXES]
    if missing_head:
        raise AuditError(
            f"{spec.name_or_path!r} is not a trained sequence classifier: its checkpoint has no "
            f"classification head ({', '.join(sorted(missing_head))} would be random)",
            "audit a model fine-tuned for sequence classification (architectures *ForSequenceClassification)",
        )
    return model


def _load_tokenizer(location: str, spec: ModelSpec, model: Any, common: dict[str, Any]) -> Any:
    """The model's own fast tokenizer, with a pad token (the end-of-text token where it has none).

    The model's ``pad_token_id`` is set to the tokenizer's where its config has none.
    """
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(location, **common)
    except (OSError, ValueError, TypeError) as error:
        raise AuditError(
            f"{spec.name_or_path!r} has no loadable tokenizer ({error})",
            "save the tokenizer beside the model with tokenizer.save_pretrained(folder)",
        ) from error
    _check_tokenizer_matches(tokenizer, model, spec)
    if not getattr(tokenizer, "is_fast", False):
        raise AuditError(
            f"the tokenizer of {spec.name_or_path!r} is a slow (Python) tokenizer without offset mappings",
            "save a fast tokenizer (tokenizer.json) beside the model",
        )
    if tokenizer.pad_token_id is None:
        if tokenizer.eos_token_id is None:
            raise AuditError(
                f"the tokenizer of {spec.name_or_path!r} has neither a pad nor an end-of-text token",
                "set tokenizer.pad_token and save it beside the model",
            )
        tokenizer.pad_token = tokenizer.eos_token  # what transformers' decoder classifiers expect
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    return tokenizer


def _place(model: Any, spec: ModelSpec) -> None:
    """Eval mode, on the asked device, in the asked precision (half precision only on a GPU).

    The weights are frozen (the audit differentiates inputs and attention, never the weights), and on
    CPU in float32 the linear layers run through oneDNN with packed weights (``tasks.model.packed_linear``).
    """
    model.eval()
    model.requires_grad_(False)
    device = _device(spec)
    if spec.precision != "float32" and device.type != "cuda":
        raise AuditError(
            f"--precision {spec.precision} needs a GPU: half precision on CPU is slow and some of its "
            "operations are missing there",
            "use --precision float32 on CPU, or --device cuda on a machine with a GPU",
        )
    model.to(device=device, dtype=getattr(torch, spec.precision))
    if device.type == "cpu" and spec.precision == "float32":
        pack_linears(model)


def weights_fingerprint(location: str, spec: ModelSpec) -> str:
    """SHA-256 over the model's weight files (name and bytes, in name order)."""
    folder = Path(location)
    if not folder.is_dir():  # a hub id: the files are in the local hub cache
        from huggingface_hub import snapshot_download

        folder = Path(snapshot_download(location, revision=spec.revision, local_files_only=True))
    files = sorted(p for p in folder.iterdir() if p.suffix in {".safetensors", ".bin"})
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.name.encode())
        with path.open("rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


def _device(spec: ModelSpec) -> torch.device:
    if spec.device == "cuda" or (spec.device == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise AuditError("--device cuda was asked for but no CUDA device is available", "use --device cpu")
        return torch.device("cuda")
    return torch.device("cpu")


def _check_tokenizer_matches(tokenizer: Any, model: Any, spec: ModelSpec) -> None:
    """Refuse a tokenizer whose vocabulary does not fit the model's embedding table.

    A larger vocabulary produces ids the model has no embedding for; a much smaller one (under half)
    means the folder had no tokenizer files (transformers then builds an empty one) or the wrong one.
    """
    tokens, embeddings = len(tokenizer), int(model.get_input_embeddings().num_embeddings)
    if tokens > embeddings or tokens < embeddings // 2:
        raise AuditError(
            f"the tokenizer of {spec.name_or_path!r} has {tokens} tokens but the model has {embeddings} token "
            "embeddings: the tokenizer is missing or belongs to another model",
            "save the model's own tokenizer beside it with tokenizer.save_pretrained(folder)",
        )


def _check_returns_attentions(model: Any, tokenizer: Any, spec: ModelSpec) -> None:
    probe = tokenizer(["attention probe"], return_tensors="pt").to(next(model.parameters()).device)
    with torch.inference_mode():
        output = model(**probe, output_attentions=True)
    attentions = getattr(output, "attentions", None)
    if not attentions or any(a is None for a in attentions):
        raise AuditError(
            f"{spec.name_or_path!r} returns no attention weights even with eager attention",
            "audit a model whose attention layers return their probabilities (output_attentions=True)",
        )
    layers = int(model.config.num_hidden_layers)
    if len(attentions) != layers:
        raise AuditError(
            f"{spec.name_or_path!r} returns {len(attentions)} attention maps for its {layers} layers (an ALBERT "
            "with several layers per group, or a family whose layers attend more than once)",
            "audit a model with one self-attention per layer",
        )


def _not_found(spec: ModelSpec, error: Exception) -> AuditError:
    offline = os.environ.get("HF_HUB_OFFLINE") == "1"
    return AuditError(
        f"cannot load the model {spec.name_or_path!r}: it is neither a preset ({', '.join(PRESETS)}), nor a "
        f"local folder, nor reachable on the Hugging Face hub{' (HF_HUB_OFFLINE=1 is set)' if offline else ''} "
        f"({type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''})",
        "check the model id or path; for a hub model, connect to the network or download it first",
    )
