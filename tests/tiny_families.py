"""Tiny random classifiers of every supported family, with the tokenizer kind that family ships.

Nothing comes from the hub: configs are built in code, and tokenizers are either the MiniLM WordPiece
tokenizer that a pip package ships (``##`` pieces) or trained here in a second on movie snippets: byte-level
BPE (``Ġ`` pieces, GPT-2 / RoBERTa / Qwen2) and a SentencePiece-style unigram model (``▁`` pieces,
ALBERT / DeBERTa / XLM-R / Llama / Mistral), each with its family's special tokens and templates.
Weights are drawn with standard deviation 0.2 so that outputs depend on the input.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

SIZES = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 64}


@dataclass(frozen=True)
class Family:
    """How to build one family's tiny classifier.

    Attributes:
        name: The family's ``model_type``.
        tokenizer: ``wordpiece``, ``bytelevel`` or ``unigram``.
        template: Special tokens around one text (``$A``) and a pair (``$A``, ``$B``), or None for none.
        config: Builds the config from the vocabulary size, pad id and the special token ids.
        padding_side: The tokenizer's padding side (the audit pads right whatever it says).
    """

    name: str
    tokenizer: str
    template: tuple[str, str] | None
    config: Callable[[int, int | None, dict[str, int]], Any]
    padding_side: str = "right"


def _config(kind: str, **extra: Any) -> Callable[[int, int | None, dict[str, int]], Any]:
    def build(vocabulary: int, pad: int | None, specials: dict[str, int]) -> Any:
        import transformers

        config_class = getattr(transformers, kind)
        labels = {"num_labels": 3, "id2label": {i: f"class_{i}" for i in range(3)}}
        labels["label2id"] = {name: i for i, name in labels["id2label"].items()}
        return config_class(
            vocab_size=vocabulary, pad_token_id=pad, initializer_range=0.2, **labels, **extra,
            **{k: v for k, v in specials.items() if k in ("bos_token_id", "eos_token_id")},
        )  # fmt: skip

    return build


ENCODER = dict(SIZES, max_position_embeddings=160)
DECODER = dict(SIZES, max_position_embeddings=160, num_key_value_heads=2)

FAMILIES: dict[str, Family] = {
    family.name: family
    for family in (
        Family("bert", "wordpiece", None, _config("BertConfig", **ENCODER)),
        Family(
            "distilbert", "wordpiece", None,
            _config("DistilBertConfig", dim=32, n_layers=2, n_heads=4, hidden_dim=64, max_position_embeddings=160),
        ),
        Family("electra", "wordpiece", None, _config("ElectraConfig", embedding_size=16, **ENCODER)),
        Family("albert", "unigram", ("[CLS] $A [SEP]", "[CLS] $A [SEP] $B:1 [SEP]:1"),
               _config("AlbertConfig", embedding_size=16, **ENCODER)),
        Family("roberta", "bytelevel", ("<s> $A </s>", "<s> $A </s> </s> $B </s>"),
               _config("RobertaConfig", **dict(ENCODER, max_position_embeddings=170))),
        Family("xlm-roberta", "unigram", ("<s> $A </s>", "<s> $A </s> </s> $B </s>"),
               _config("XLMRobertaConfig", **dict(ENCODER, max_position_embeddings=170))),
        Family("deberta-v2", "unigram", ("[CLS] $A [SEP]", "[CLS] $A [SEP] $B:1 [SEP]:1"),
               _config("DebertaV2Config", relative_attention=True, pos_att_type=["p2c", "c2p"],
                       position_biased_input=False, **ENCODER)),
        Family("gpt2", "bytelevel", None,
               _config("GPT2Config", n_embd=32, n_layer=2, n_head=4, n_inner=64, n_positions=160)),
        Family("llama", "unigram", ("<s> $A", "<s> $A $B"), _config("LlamaConfig", **DECODER), padding_side="left"),
        Family("qwen2", "bytelevel", None, _config("Qwen2Config", **DECODER)),
        Family("mistral", "unigram", ("<s> $A", "<s> $A $B"), _config("MistralConfig", **DECODER)),
    )
}  # fmt: skip

SPECIALS = {
    "wordpiece": {},
    "bytelevel": {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "pad_token": "<pad>",
                  "mask_token": "<mask>", "cls_token": "<s>", "sep_token": "</s>"},
    "unigram": {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "pad_token": "<pad>",
                "mask_token": "[MASK]", "cls_token": "[CLS]", "sep_token": "[SEP]"},
}  # fmt: skip


@functools.cache
def _training_texts() -> tuple[str, ...]:
    from tasks.data.builtin import BUILTIN_CORPORA

    return tuple(BUILTIN_CORPORA["movie-snippets"].read("train")["text"].head(1500))


@functools.cache
def _trained(kind: str) -> str:
    """A tokenizer of ``kind`` trained on movie snippets, serialised (trained once per session)."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    special_tokens = list(dict.fromkeys(SPECIALS[kind].values()))
    if kind == "bytelevel":
        tokenizer = Tokenizer(models.BPE())
        tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tokenizer.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(vocab_size=700, special_tokens=special_tokens, show_progress=False,
                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet())  # fmt: skip
    else:
        tokenizer = Tokenizer(models.Unigram())
        tokenizer.normalizer = normalizers.NFKC()
        tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
        tokenizer.decoder = decoders.Metaspace()
        trainer = trainers.UnigramTrainer(vocab_size=700, special_tokens=special_tokens, unk_token="<unk>",
                                          show_progress=False)  # fmt: skip
    tokenizer.train_from_iterator(_training_texts(), trainer)
    return tokenizer.to_str()


def tokenizer_for(family: Family) -> Any:
    """The family's kind of fast tokenizer, with its special tokens and templates."""
    from tokenizers import Tokenizer, processors
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    from tasks.model.presets import encoder_path

    if family.tokenizer == "wordpiece":
        return AutoTokenizer.from_pretrained(encoder_path())
    tokenizer = Tokenizer.from_str(_trained(family.tokenizer))
    if family.template is not None:
        used = {piece.split(":")[0] for piece in " ".join(family.template).split() if not piece.startswith("$")}
        tokenizer.post_processor = processors.TemplateProcessing(
            single=family.template[0],
            pair=family.template[1],
            special_tokens=[(token, tokenizer.token_to_id(token)) for token in sorted(used)],
        )
    wrapped = PreTrainedTokenizerFast(tokenizer_object=tokenizer, **SPECIALS[family.tokenizer])
    if family.name in ("gpt2", "qwen2", "llama", "mistral"):
        wrapped.pad_token = None  # decoders usually ship without one; the audit falls back to end-of-text
    wrapped.padding_side = family.padding_side
    return wrapped


def save_tiny(family: Family, folder: Path, seed: int = 0) -> Path:
    """Save a seeded random ``*ForSequenceClassification`` of ``family`` and its tokenizer to ``folder``."""
    from transformers import AutoModelForSequenceClassification

    tokenizer = tokenizer_for(family)
    specials = {"bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id}
    specials = {key: value for key, value in specials.items() if value is not None}
    config = family.config(len(tokenizer), tokenizer.pad_token_id, specials)
    torch.manual_seed(seed)
    model = AutoModelForSequenceClassification.from_config(config)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
