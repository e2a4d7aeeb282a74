"""Per-family model adapters: where a family keeps what the methods and interventions need.

Methods never reach into a model's modules directly; they ask its adapter (``base.ModelAdapter``). An
adapter says

- which position the classification head reads (the **classification position** ``c`` of docs/methodology.md):
  position 0 for encoders (``[CLS]``, ``<s>``), the last non-padding token for decoder-style classifiers;
- how the head turns the final hidden state at ``c`` into logits, and which final norm a pre-norm
  decoder applies before it;
- how the embedding layer produces ``hidden_states[0]`` (ids or embeddings, segment and position ids);
- where the transformer layers are, how to run one from cached hidden states (the mask it takes,
  rotary position embeddings), and where a layer's attention module and value and output projections
  are (interventions, norm-based attention);
- for a post-LN encoder, every module of a layer and the head's stages, once for all the
  decompositions (``decomposition.PostNormLayout``).

The audit right-pads every batch itself, whatever the tokenizer's ``padding_side``: example ``i``
occupies positions ``0 .. T_i - 1`` of its row, so no family needs position ids shifted for padding.
``classification_positions`` nevertheless reads the last attended position of each row, which is the
last non-padding token under left padding too.

Families (``encoders.ENCODERS``, then ``decoders.DECODERS``):

| family | model types | ``c`` | interventions | decompositions (``decomposition.PostNormLayout``) |
|---|---|---|---|---|
| BERT | bert | first | yes | ALTI, GlobEnc, DecompX |
| RoBERTa | roberta, xlm-roberta, camembert | first | yes | ALTI, GlobEnc, DecompX |
| DistilBERT | distilbert | first | yes | ALTI, GlobEnc, DecompX |
| ALBERT | albert (one layer's parameters shared by every depth) | first | yes | ALTI, GlobEnc, DecompX |
| ELECTRA | electra | first | yes | ALTI, GlobEnc, DecompX |
| DeBERTa-v2/v3 | deberta-v2 | first | no: its disentangled attention is computed in its own module | ALTI, GlobEnc |
| GPT-2 | gpt2 | last | yes | none: pre-norm |
| Llama-style | llama, mistral, qwen2, qwen3 | last | yes | none: pre-norm |
"""

from __future__ import annotations

from tasks.errors import AuditError
from tasks.model.adapters.base import ModelAdapter
from tasks.model.adapters.decoders import DECODERS
from tasks.model.adapters.encoders import ENCODERS

ADAPTERS: tuple[ModelAdapter, ...] = (*ENCODERS, *DECODERS)
"""Every family's adapter, in search order."""


def adapter_for(model_type: str) -> ModelAdapter:
    """The adapter serving ``model_type``.

    Raises:
        AuditError: No adapter describes this family.
    """
    for adapter in ADAPTERS:
        if model_type in adapter.model_types:
            return adapter
    supported = ", ".join(t for adapter in ADAPTERS for t in adapter.model_types)
    raise AuditError(
        f"no adapter for model type {model_type!r}: the audit does not know which token this family's "
        "classification head reads, nor where its attention is",
        f"audit a model of a supported type ({supported}), or add a ModelAdapter in tasks/model/adapters/",
    )
