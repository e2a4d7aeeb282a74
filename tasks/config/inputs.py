"""What is audited: the model (``ModelSpec``) and the examples (``DataSpec``)."""

from __future__ import annotations

from pydantic import Field

from tasks.config.base import (
    Device,
    FrozenModel,
    Precision,
)


class ModelSpec(FrozenModel, frozen=True):
    """Which classifier to audit.

    Attributes:
        name_or_path: A preset name (``movie-snippets``), a local directory saved with
            ``save_pretrained``, or a Hugging Face hub id.
        revision: Hub revision (branch, tag or commit) for hub ids.
        trust_remote_code: Run the model repository's own Python code. Off unless asked.
        allow_pickle: Accept pickle-based ``.bin`` weights when no safetensors file exists. Off
            unless asked: unpickling runs arbitrary code.
        device: ``cpu`` (the tested default), ``cuda``, or ``auto``.
        precision: The weights' floating-point type: ``float32`` (default), or half precision
            (``float16``, ``bfloat16``) on a GPU only. Recorded in the manifest; scores computed in half
            precision differ from float32 ones by rounding (see the README's device section).
    """

    name_or_path: str = Field(
        default="movie-snippets",
        description="preset name, local folder (save_pretrained) or Hugging Face hub id",
        json_schema_extra={"flag": "--model"},
    )
    revision: str | None = Field(default=None, description="hub revision: branch, tag or commit")
    trust_remote_code: bool = Field(default=False, description="run the model repository's own code")
    allow_pickle: bool = Field(
        default=False, description="accept pickle-based .bin weights when there are no safetensors"
    )
    device: Device = Field(default="cpu", description="where the model runs")
    precision: Precision = Field(
        default="float32", description="weights' type: float32, or float16 / bfloat16 on a GPU"
    )


class DataSpec(FrozenModel, frozen=True):
    """Which examples to audit.

    Attributes:
        dataset: A built-in corpus name (``movie-snippets``), a local CSV / JSONL / Parquet file or a
            dataset directory, or a Hugging Face hub id.
        split: The split to read (hub datasets and built-in corpora).
        text_column: Column holding the text.
        text_pair_column: Column holding the second text of a text pair (NLI hypothesis, paraphrase,
            passage of a question); None for single texts. Both texts are explained.
        label_column: Column holding the gold label (class index or label name); None when unlabelled.
        id_column: Column holding a stable example id; None uses the row number.
        rationale_column: Column holding human rationales (character spans, word indices or highlighted
            words; see ``tasks.data.rationales``) for the plausibility metrics; None when there are none.
        limit: Audit at most this many examples, taken in seeded hash order (a random sample that is
            nested: the first 100 of a seed are also in its first 200). None audits the whole split.
        sample_seed: Seed of that hash order.
        target_precision: Size the sample, before the run starts, for a 95 % interval half-width of at most
            about this on every verdict evidence of the overall slice (``tasks.verdict.sample_size``: a
            conservative bound, no pilot); sets ``limit``, which a given ``limit`` caps. None: no sizing.
        max_length: Texts longer than this many tokens (specials included) are truncated; the
            truncation is recorded per example.
    """

    dataset: str = Field(
        default="movie-snippets", description="built-in corpus, local CSV/JSONL/Parquet file or folder, or hub id"
    )
    split: str = Field(default="test", description="split to audit")
    text_column: str = Field(default="text", description="column with the text")
    text_pair_column: str | None = Field(
        default=None,
        description="column with the second text of a pair (NLI, paraphrase); both texts are explained",
        json_schema_extra={"unset": "none"},
    )
    label_column: str | None = Field(
        default="label",
        description="column with the gold label",
        json_schema_extra={"none_flag": "--no-labels", "none_help": "the corpus has no gold labels"},
    )
    id_column: str | None = Field(
        default=None, description="column with a unique example id", json_schema_extra={"unset": "row number"}
    )
    rationale_column: str | None = Field(
        default=None, description="column with human rationales (spans, word indices or words) for plausibility"
    )
    limit: int | None = Field(default=None, gt=0, description="audit at most N examples (seeded random sample)")
    sample_seed: int = Field(default=0, description="seed of the --limit sample")
    target_precision: float | None = Field(
        default=None,
        gt=0.0,
        le=1.0,
        description="size the sample so that every verdict evidence's 95-percent interval is at most about "
        "plus or minus this wide (a conservative bound; --limit caps it)",
        json_schema_extra={"unset": "no sizing"},
    )
    max_length: int = Field(
        default=128, ge=4, le=100_000, description="truncate texts to this many tokens, specials included"
    )
