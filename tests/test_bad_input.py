"""Bad input, table-driven: every kind gets one clear error naming the fix, or a documented handling.

``ERRORS``: the command line refuses the input with exit status 2, an ``error:`` line that names the
problem, a ``fix:`` line, and no traceback, before any work starts.

``HANDLED``: inputs that are valid but unusual; the audit runs and records what happened (documented in
the README): empty and whitespace-only texts are audited with no content tokens (their rank metrics are
undefined and their verdict inconclusive), long texts are truncated and flagged, control characters and
emoji are kept as text.
"""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from flows.cli import main
from tasks import store
from tasks.config import AuditConfig
from tasks.pipeline.batch import audit_batch
from tasks.pipeline.plan import plan_run
from tests.conftest import save_tiny_classifier

GOOD = "text,label\na great movie,class_0\nterrible and far too long,class_1\nunwatchable,2\n"


@dataclass
class Workspace:
    """Files for the cases, in one temporary folder."""

    folder: Path
    model: Path

    def file(self, name: str, content: str | bytes) -> str:
        path = self.folder / name
        path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
        return str(path)

    def run(self, *extra: str, dataset: str | None = None) -> list[str]:
        return [
            "run", "--model", str(self.model), "--dataset", dataset or self.file("good.csv", GOOD),
            "--db", str(self.folder / "audit.duckdb"), "--out", str(self.folder / "out"), "--no-pdf", *extra,
        ]  # fmt: skip


def headless_model(w: Workspace) -> list[str]:
    from transformers import AutoTokenizer, BertConfig, BertModel

    folder = w.folder / "base-bert"
    BertModel(
        BertConfig(vocab_size=30522, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=16)
    ).save_pretrained(folder)
    AutoTokenizer.from_pretrained(w.model).save_pretrained(folder)
    return w.run("--model", str(folder))


def model_without_tokenizer(w: Workspace) -> list[str]:
    folder = w.folder / "no-tokenizer"
    folder.mkdir()
    for name in ("config.json", "model.safetensors"):
        shutil.copy(w.model / name, folder / name)
    return w.run("--model", str(folder))


def mismatched_tokenizer(w: Workspace) -> list[str]:
    from transformers import BertTokenizerFast

    folder = w.folder / "mismatched"
    shutil.copytree(w.model, folder)
    vocabulary = {token: i for i, token in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "b"])}
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        (folder / name).unlink(missing_ok=True)
    BertTokenizerFast(vocab=vocabulary).save_pretrained(folder)
    return w.run("--model", str(folder))


def pickle_only_model(w: Workspace) -> list[str]:
    folder = w.folder / "pickled"
    shutil.copytree(w.model, folder)
    torch.save(load_file(folder / "model.safetensors"), folder / "pytorch_model.bin")
    (folder / "model.safetensors").unlink()
    return w.run("--model", str(folder))


def model_path_is_a_file(w: Workspace) -> list[str]:
    return w.run("--model", w.file("model.bin", b"not a model"))


def corrupt_database(w: Workspace) -> list[str]:
    path = w.file("corrupt.duckdb", b"\x00garbage" * 500)
    return ["runs", "--db", path]


def newer_database(w: Workspace) -> list[str]:
    path = w.folder / "newer.duckdb"
    with store.connect(path) as connection:
        connection.execute("UPDATE schema_info SET value = '99' WHERE key = 'schema_version'")
    return ["runs", "--db", str(path)]


def unwritable_database(w: Workspace) -> list[str]:
    return w.run("--db", str(Path(w.file("blocker", "x")) / "audit.duckdb"))


@dataclass(frozen=True)
class BadInput:
    name: str
    argv: Callable[[Workspace], list[str]]
    mentions: tuple[str, ...]


ERRORS = [
    BadInput("empty corpus (header only)", lambda w: w.run(dataset=w.file("e.csv", "text,label\n")), ("no examples",)),
    BadInput("empty file", lambda w: w.run(dataset=w.file("zero.csv", "")), ("empty",)),
    BadInput("not UTF-8", lambda w: w.run(dataset=w.file("l1.csv", "text,label\ncaf\xe9 ok,0\n".encode("latin-1"))),
             ("UTF-8",)),
    BadInput("unknown file type", lambda w: w.run(dataset=w.file("d.xlsx", "x")), ("unknown file type", ".xlsx")),
    BadInput("missing text column", lambda w: w.run(dataset=w.file("m.csv", "review,label\nok,0\n")),
             ("no column 'text'", "review", "--text-column")),
    BadInput("misnamed label column", lambda w: w.run("--label-column", "stars"), ("no column 'stars'",)),
    BadInput("text column of numbers", lambda w: w.run(dataset=w.file("n.csv", "text,label\n3,0\n4,1\n")),
             ("non-text values",)),
    BadInput("text column with a missing value", lambda w: w.run(dataset=w.file("gap.csv", "text,label\nok,0\n,1\n")),
             ("non-text values",)),
    BadInput("label not in the model's classes", lambda w: w.run(dataset=w.file("l.csv", "text,label\nok,neutral\n")),
             ("neutral", "class_0")),
    BadInput("fractional label", lambda w: w.run(dataset=w.file("f.csv", "text,label\nok,0.5\n")), ("0.5",)),
    BadInput("repeated ids",
             lambda w: w.run("--id-column", "id", dataset=w.file("i.csv", "id,text,label\n1,a,0\n1,b,1\n")),
             ("repeats ids",)),
    BadInput("missing dataset path", lambda w: w.run(dataset=str(w.folder / "nope.csv")), ("neither a built-in",)),
    BadInput("missing model path", lambda w: w.run("--model", str(w.folder / "no-model")), ("neither a preset",)),
    BadInput("model path is a file", model_path_is_a_file, ("is a file",)),
    BadInput("not a sequence classifier", headless_model, ("not a trained sequence classifier",)),
    BadInput("model without tokenizer", model_without_tokenizer, ("tokenizer is missing",)),
    BadInput("mismatched tokenizer", mismatched_tokenizer, ("tokenizer", "7 tokens")),
    BadInput("pickle-only weights", pickle_only_model, ("safetensors", "--allow-pickle")),
    BadInput("negative limit", lambda w: w.run("--limit", "-5"), ("--limit",)),
    BadInput("limit not a number", lambda w: w.run("--limit", "all"), ("--limit", "'all'")),
    BadInput("zero batch size", lambda w: w.run("--batch-size", "0"), ("--batch-size",)),
    BadInput("unknown method", lambda w: w.run("--methods", "rollout,shap"), ("shap",)),
    BadInput("unknown intervention", lambda w: w.run("--interventions", "scramble"), ("scramble",)),
    BadInput("agreement threshold above 1", lambda w: w.run("--agreement-min", "2"), ("--agreement-min",)),
    BadInput("verdict reference that is not a reference", lambda w: w.run("--verdict-references", "rollout"),
             ("--verdict-references", "rollout")),
    BadInput("unordered confidence bins", lambda w: w.run("--confidence-bins", "0.9,0.5"), ("--confidence-bins",)),
    BadInput("rationale size of zero", lambda w: w.run("--k", "0"), ("--k",)),
    BadInput("integrated-gradients steps out of order", lambda w: w.run("--ig-steps", "32,16"),
             ("--ig-steps", "must increase", "10,21")),
    BadInput("max length without room for text", lambda w: w.run("--max-length", "2"), ("--max-length",)),
    BadInput("intervention layer the model lacks", lambda w: w.run("--intervention-layers", "9"), ("layer 9",)),
    BadInput("CUDA asked for without a GPU", lambda w: w.run("--device", "cuda"), ("cuda",)),
    BadInput("rationale in no format",
             lambda w: w.run("--rationale-column", "r", dataset=w.file("r.csv", 'text,label,r\nok,0,"{""a"": 1}"\n')),
             ("no supported format",)),
    BadInput("rationale span outside the text",
             lambda w: w.run("--rationale-column", "r", dataset=w.file("s.csv", 'text,label,r\nok,0,"[[0, 40]]"\n')),
             ("outside its text",)),
    BadInput("database folder is a file", unwritable_database, ("blocker", "--db")),
    BadInput("corrupt database", corrupt_database, ("not a readable DuckDB database",)),
    BadInput("database of a newer version", newer_database, ("newer attention-audit",)),
]  # fmt: skip


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return save_tiny_classifier(tmp_path_factory.mktemp("model"))


@pytest.fixture
def workspace(tmp_path, model) -> Workspace:
    return Workspace(tmp_path, model)


def test_there_are_at_least_thirty_kinds_of_bad_input():
    assert len(ERRORS) + len(HANDLED) >= 30


@pytest.mark.parametrize("case", ERRORS, ids=[case.name for case in ERRORS])
def test_bad_input_gets_one_clear_error_and_fix(case: BadInput, workspace, capfd):
    if case.name.startswith("CUDA") and torch.cuda.is_available():
        pytest.skip("a GPU is present")
    code = main(case.argv(workspace))
    out, err = capfd.readouterr()
    assert code == 2, out + err
    assert err.startswith("error: ") and "\nfix: " in err
    assert "Traceback" not in out + err
    for words in case.mentions:
        assert words in err, f"{words!r} not in {err!r}"


# --- documented handling --------------------------------------------------------------------------


@dataclass(frozen=True)
class Handled:
    name: str
    text: str
    check: Callable[[pd.Series, pd.DataFrame], None]


def no_content(example: pd.Series, metrics: pd.DataFrame) -> None:
    assert example["n_content_tokens"] == 0
    aopc = metrics[metrics["metric"] == "aopc_comprehensiveness"]["value"]
    assert len(aopc) and all(math.isnan(v) for v in aopc)


def truncated(example: pd.Series, metrics: pd.DataFrame) -> None:
    assert bool(example["truncated"]) and example["n_tokens"] == 32 and example["n_original_tokens"] > 10_000


def kept_verbatim(text: str) -> Callable[[pd.Series, pd.DataFrame], None]:
    def check(example: pd.Series, metrics: pd.DataFrame) -> None:
        assert example["text"] == text
        assert not metrics.empty

    return check


CONTROL = "tab\there, bell\x07, escape\x1b[31m, nul\x00 end"
EMOJI = "😀 loved it 🎬🍿 — ñandú, 北京, עברית"
HANDLED = [
    Handled("empty text", "", no_content),
    Handled("whitespace-only text", " \t\n  ", no_content),
    Handled("very long text", "word " * 20_000, truncated),
    Handled("control characters", CONTROL, kept_verbatim(CONTROL)),
    Handled("emoji and mixed scripts", EMOJI, kept_verbatim(EMOJI)),
]


@pytest.mark.parametrize("case", HANDLED, ids=[case.name for case in HANDLED])
def test_unusual_but_valid_input_is_audited_and_recorded(case: Handled, model, tmp_path):
    dataset = tmp_path / "data.jsonl"
    dataset.write_text(
        json.dumps({"text": case.text, "label": 0}) + "\n" + json.dumps({"text": "fine", "label": 1}), encoding="utf-8"
    )
    config = AuditConfig.model_validate(
        {
            "model": {"name_or_path": str(model)},
            "data": {"dataset": str(dataset), "max_length": 32},
            "methods": {"methods": ["attention_last", "leave_one_out", "random"], "random_draws": 1},
            "interventions": {"interventions": ["uniform"]},
        }
    )
    plan = plan_run(config)
    from tasks.model.loading import load_model

    result = audit_batch(
        load_model(config.model), list(plan.examples), config.methods, config.interventions, config.execution
    )
    db = tmp_path / "audit.duckdb"
    with store.connect(db) as connection:
        store.register_run(connection, plan.run_id, config.model_dump(mode="json"), plan.manifest)
        store.write_batch(connection, plan.run_id, result, plan.labels)
        examples = store.read_table(connection, "examples", plan.run_id).set_index("example_id")
        metrics = store.read_table(connection, "metrics", plan.run_id)
    case.check(examples.loc["0"], metrics[metrics["example_id"] == "0"])
    from datetime import UTC, datetime

    from tasks import report
    from tasks.pipeline.steps import judge_run_task

    judge_run_task.fn(db, plan.run_id, config.methods.methods, config.verdict)
    with store.connect(db, read_only=True) as connection:
        context = report.build_context(connection, None, generated_at=datetime(2026, 1, 1, tzinfo=UTC))
    report.render_pdf(report.render_html(context), tmp_path / "report.pdf")
    assert (tmp_path / "report.pdf").stat().st_size > 10_000
