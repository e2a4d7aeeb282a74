"""The command line: every input problem a user can make is one ``error:`` / ``fix:`` pair, exit status 2,
no traceback, found before Prefect starts; ``command_line`` reproduces a configuration exactly."""

from __future__ import annotations

import shlex
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from pydantic import ValidationError

from flows.cli import build_parser, config_from_args, main
from tasks.config import (
    AuditConfig,
    DataSpec,
    ExecutionSettings,
    InterventionOptions,
    MethodOptions,
    ModelSpec,
    OutputSettings,
)
from tasks.explain.registry import METHODS
from tasks.flags import FLAGS, SWITCHES, command_line, field_value
from tasks.model.presets import encoder_path
from tasks.records import MethodFamily

GOOD_CSV = "text,label\na great movie,class_0\nterrible and far too long,class_1\nunwatchable,2\n"


@dataclass(frozen=True)
class Inputs:
    """Files the bad-input cases point at, all inside one temporary folder."""

    folder: Path
    model: Path
    headless_model: Path

    def csv(self, name: str, content: str) -> str:
        path = self.folder / name
        path.write_text(content, encoding="utf-8")
        return str(path)

    def run(self, *extra: str) -> list[str]:
        """``run`` on the tiny model and a good CSV, with ``extra`` options appended (the last one wins)."""
        return [
            "run",
            "--model",
            str(self.model),
            "--dataset",
            self.csv("good.csv", GOOD_CSV),
            "--db",
            str(self.folder / "audit.duckdb"),
            "--out",
            str(self.folder / "report"),
            "--no-pdf",
            *extra,
        ]


@dataclass(frozen=True)
class BadInput:
    """A command line with one mistake, and the words its error message must contain."""

    name: str
    argv: Callable[[Inputs], list[str]]
    mentions: tuple[str, ...]


def unwritable_db(inputs: Inputs) -> list[str]:
    blocker = inputs.folder / "a-file"
    blocker.write_text("not a folder")
    return inputs.run("--db", str(blocker / "audit.duckdb"))


def unwritable_report_folder(inputs: Inputs) -> list[str]:
    blocker = inputs.folder / "a-file-too"
    blocker.write_text("not a folder")
    return inputs.run("--out", str(blocker / "reports"))


def corrupt_db(inputs: Inputs) -> list[str]:
    path = inputs.folder / "corrupt.duckdb"
    path.write_bytes(b"this is not a database\x00" * 200)
    return ["runs", "--db", str(path)]


def database_with_an_empty_run(inputs: Inputs) -> Path:
    from tasks import store

    path = inputs.folder / "started.duckdb"
    with store.connect(path) as connection:
        store.register_run(connection, "0123456789abcdef", {}, {})
    return path


def report_of_unknown_run(inputs: Inputs) -> list[str]:
    return ["report", "--db", str(database_with_an_empty_run(inputs)), "--run", "nope", "--no-pdf"]


def report_of_empty_run(inputs: Inputs) -> list[str]:
    return ["report", "--db", str(database_with_an_empty_run(inputs)), "--no-pdf"]


BAD_INPUTS = (
    BadInput("unknown method", lambda i: i.run("--methods", "attention_last,nope"), ("--methods", "nope")),
    BadInput(
        "unknown intervention", lambda i: i.run("--interventions", "uniform,shuffle"), ("--interventions", "shuffle")
    ),
    BadInput(
        "a layer the model does not have",
        lambda i: i.run("--intervention-layers", "7"),
        ("--intervention-layers", "layer 7", "2 layers"),
    ),
    BadInput(
        "a layer that is not a number", lambda i: i.run("--intervention-layers", "last"), ("--intervention-layers",)
    ),
    BadInput(
        "model path that does not exist",
        lambda i: i.run("--model", str(i.folder / "no-such-model")),
        ("no-such-model", "HF_HUB_OFFLINE"),
    ),
    BadInput(
        "base model without a classification head",
        lambda i: i.run("--model", str(i.headless_model)),
        ("classification head",),
    ),
    BadInput(
        "CSV without the text column",
        lambda i: i.run("--dataset", i.csv("reviews.csv", "review,stars\ngood,class_0\n")),
        ("'text'", "review", "stars", "--text-column"),
    ),
    BadInput(
        "CSV with a header only",
        lambda i: i.run("--dataset", i.csv("empty.csv", "text,label\n")),
        ("no examples",),
    ),
    BadInput(
        "label that is not one of the model's classes",
        lambda i: i.run("--dataset", i.csv("sentiment.csv", "text,label\nfine,class_0\nawful,positive\n")),
        ("'positive'", "class_0, class_1, class_2", "--no-labels"),
    ),
    BadInput("--limit that is not a number", lambda i: i.run("--limit", "ten"), ("--limit", "'ten'")),
    BadInput("--limit 0", lambda i: i.run("--limit", "0"), ("--limit",)),
    BadInput("--batch-size 0", lambda i: i.run("--batch-size", "0"), ("--batch-size",)),
    BadInput("--k 0", lambda i: i.run("--k", "0"), ("--k", "(0, 1]")),
    BadInput("--max-length 2", lambda i: i.run("--max-length", "2"), ("--max-length",)),
    BadInput("database folder that is a file", unwritable_db, ("a-file", "--db")),
    BadInput("report folder under a file", unwritable_report_folder, ("a-file-too", "--out")),
    BadInput(
        "report of a database that does not exist",
        lambda i: ["report", "--db", str(i.folder / "missing.duckdb"), "--out", str(i.folder / "report")],
        ("missing.duckdb",),
    ),
    BadInput("report of a run that is not stored", report_of_unknown_run, ("'nope'", "0123456789abcdef")),
    BadInput("report of a run without examples", report_of_empty_run, ("0123456789abcdef", "no stored examples")),
    BadInput("runs of a corrupt database", corrupt_db, ("corrupt.duckdb", "not a readable DuckDB database")),
)


@pytest.fixture(scope="module")
def headless_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny base ``BertModel`` (no classification head) saved with the MiniLM tokenizer."""
    from transformers import AutoTokenizer, BertConfig, BertModel

    folder = tmp_path_factory.mktemp("headless-bert")
    tokenizer = AutoTokenizer.from_pretrained(encoder_path())
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=128,
    )
    BertModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture
def inputs(tmp_path: Path, tiny_model_dir: Path, headless_model_dir: Path) -> Inputs:
    return Inputs(folder=tmp_path, model=tiny_model_dir, headless_model=headless_model_dir)


@pytest.mark.parametrize("case", BAD_INPUTS, ids=[case.name for case in BAD_INPUTS])
def test_bad_input_is_one_error_and_fix_with_exit_status_2(
    case: BadInput, inputs: Inputs, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    argv = case.argv(inputs)

    status = main(argv)

    captured = capfd.readouterr()
    assert status == 2
    assert captured.err.startswith("error: ")
    assert "\nfix: " in captured.err
    for word in case.mentions:
        assert word in captured.err
    assert "Traceback" not in captured.out + captured.err
    assert "Beginning flow run" not in captured.out + captured.err, "the problem surfaced after a flow started"
    assert "Starting temporary server" not in captured.out + captured.err, "Prefect started a server of its own"


def test_a_bad_run_leaves_no_database_behind(inputs: Inputs, capfd: pytest.CaptureFixture[str]) -> None:
    assert main(inputs.run("--limit", "0")) == 2

    assert not (inputs.folder / "audit.duckdb").exists()


def test_methods_lists_every_registered_method(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["methods"]) == 0

    out = capsys.readouterr().out
    listed = [line.split()[0] for line in out.splitlines() if line.startswith("  ") and not line.startswith("   ")]
    assert sorted(listed) == sorted(METHODS)
    headings = [line for line in out.splitlines() if line and not line.startswith(" ")]
    assert headings[0] == "attention and attention-derived (under test):"
    for name, spec in METHODS.items():  # grouped: every method under its family's heading, with its paper
        block = out.split(headings[0])[1].split("references")[0] if spec.family == MethodFamily.ATTENTION else out
        assert f"  {name} " in block and f"({spec.citation})" in out
    assert "reads a decomposition of what attention mixes: it weighs each attention weight" in out
    assert "attention_last" in out.split("reads the attention weights alone")[0]


def test_runs_of_a_fresh_database_says_there_are_none(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tasks import store

    with store.connect(tmp_path / "audit.duckdb"):
        pass

    assert main(["runs", "--db", str(tmp_path / "audit.duckdb")]) == 0
    assert capsys.readouterr().out.strip() == "no runs"


def round_trip(config: AuditConfig) -> AuditConfig:
    """The configuration that ``attention-audit run`` builds from ``command_line(config)``."""
    words = shlex.split(command_line(config))
    assert words[:2] == ["attention-audit", "run"]
    return config_from_args(build_parser().parse_args(words[1:]))


NON_DEFAULT = AuditConfig(
    model=ModelSpec(
        name_or_path="org/some classifier", revision="v1.2", trust_remote_code=True, allow_pickle=True, device="auto"
    ),
    data=DataSpec(
        dataset="my reviews/test set.jsonl",
        split="validation",
        text_column="sentence",
        label_column=None,
        id_column="review id",
        limit=250,
        sample_seed=7,
        max_length=64,
    ),
    methods=MethodOptions(
        methods=("rollout", "integrated_gradients", "random"),
        ig_steps=16,
        ig_rule="riemann_right",
        removal="mask",
        k_fractions=(0.1, 1 / 3, 0.5),
        random_draws=5,
        agreement_top_k=3,
        flow_max_tokens=40,
        seed=-1,
    ),
    interventions=InterventionOptions(
        interventions=("uniform", "adversarial"),
        layers=(0, -1),
        permutation_draws=7,
        erasure_draws=3,
        adversarial_epsilon=0.02,
        adversarial_steps=12,
    ),
    execution=ExecutionSettings(batch_size=8, token_budget=2048, concurrency=2, threads=1),
    output=OutputSettings(db=Path("results dir/audit.duckdb"), out_dir=Path("-reports"), pdf=False),
)


def test_command_line_reproduces_a_non_default_configuration() -> None:
    assert round_trip(NON_DEFAULT) == NON_DEFAULT


def test_command_line_of_the_default_configuration_has_no_options() -> None:
    assert command_line(AuditConfig()) == "attention-audit run"
    assert round_trip(AuditConfig()) == AuditConfig()


def test_command_line_keeps_a_label_column_that_is_not_the_default() -> None:
    config = AuditConfig(data=DataSpec(label_column="sentiment"))

    assert round_trip(config) == config


def test_no_interventions_round_trips_as_none() -> None:
    config = AuditConfig(interventions=InterventionOptions(interventions=("none",)))
    assert config.interventions.interventions == ()
    assert "--interventions none" in command_line(config)
    assert round_trip(config) == config


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--preset", "bbc-news"], ("bbc-news", "bbc-news", "test", 256, "sentence")),
        (["--preset", "movie-snippets"], ("movie-snippets", "movie-snippets", "test", 128, "token")),
        (["--preset", "bbc-news", "--max-length", "512"], ("bbc-news", "bbc-news", "test", 512, "sentence")),
        (["--preset", "bbc-news", "--units", "word"], ("bbc-news", "bbc-news", "test", 256, "word")),
        (["--preset", "bbc-news", "--dataset", "mine.csv"], ("bbc-news", "mine.csv", "test", 128, "token")),
    ],
)
def test_a_preset_names_its_model_corpus_split_length_and_units_unless_given(argv, expected) -> None:
    from flows.cli import _preset_defaults, _with_preset

    args = build_parser().parse_args(["run", *argv])
    config = _preset_defaults(config_from_args(_with_preset(args)))
    data = config.data
    assert (config.model.name_or_path, data.dataset, data.split, data.max_length, config.methods.units) == expected


def test_an_unknown_preset_is_one_error_naming_the_presets(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--preset", "imdb"]) == 2
    error = capsys.readouterr().err
    assert "unknown preset 'imdb'" in error and "bbc-news" in error


def test_run_help_lists_every_option_with_the_default_of_its_field(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["run", "--help"])
    shown = " ".join(capsys.readouterr().out.split())  # argparse wraps lines

    default = AuditConfig()
    for flag in FLAGS:
        assert f" {flag.flag} " in f" {shown} ", flag.flag
        assert " ".join(flag.help.split()) in shown, flag.flag
        value = field_value(default, flag.field)
        if flag.kind not in SWITCHES and value not in (None, ()):
            rendered = ",".join(str(v) for v in value) if isinstance(value, tuple) else str(value)
            assert f"[{rendered}]" in shown, flag.flag
    for choices in (flag.choices for flag in FLAGS if flag.choices):
        assert "{" + ",".join(choices) + "}" in shown


def a_value_other_than(base: object, kind: str, choices: tuple[str, ...] | None, flag: str = "") -> str:
    """A valid command-line value for an option of ``kind`` that differs from the field's default.

    A choice (or list of integers) the configuration refuses on its own (``--removal-check delete`` while
    ``--removal`` is ``delete``) is passed over for the next one.
    """
    if choices:
        return next(choice for choice in choices if choice != base and accepted(flag, choice))
    if kind == "int":
        return str(base + 1 if isinstance(base, int) else 64)
    if kind == "ints":  # --ig-steps takes sizes of its rule: the nested rule's are 10, 21, 43, 87
        return next(value for value in ("1,2", "10,21") if accepted(flag, value))
    return {"float": "0.5", "floats": "0.25,0.5", "ints": "1,2", "str": "x", "path": "some/where", "list": "rollout"}[
        kind
    ]


def accepted(flag: str, value: str) -> bool:
    """Whether ``run FLAG VALUE`` alone makes a valid configuration (True when no flag is named)."""
    if not flag:
        return True
    try:
        config_from_args(build_parser().parse_args(["run", flag, value]))
    except ValidationError:
        return False
    return True


def test_every_run_option_sets_its_field_alone_and_round_trips() -> None:
    default = AuditConfig()
    for flag in FLAGS:
        base = field_value(default, flag.field)
        argv = (
            [flag.flag]
            if flag.kind in SWITCHES
            else [flag.flag, a_value_other_than(base, flag.kind, flag.choices, flag.flag)]
        )
        config = config_from_args(build_parser().parse_args(["run", *argv]))

        changed = field_value(config, flag.field)
        assert changed != base and (flag.kind not in SWITCHES or changed == SWITCHES[flag.kind]), flag.flag
        assert command_line(config) == shlex.join(["attention-audit", "run", *argv]), flag.flag
        assert round_trip(config) == config, flag.flag
