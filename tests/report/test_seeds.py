"""The seed baseline end to end: the task stores it once, and the report shows what the database holds."""

from __future__ import annotations

import dataclasses
import re
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest

from tasks import report, store
from tasks.config import AuditConfig, DataSpec, InterventionOptions, MethodOptions, ModelSpec, SeedOptions
from tasks.model.loading import load_model
from tasks.pipeline.batch import audit_batch
from tasks.pipeline.plan import plan_run
from tasks.pipeline.steps import judge_run_task, seed_baseline_task
from tasks.report.seeds import SeedReport, seed_sentences, stability_rows
from tasks.verdict.resolve import resolve
from tests.conftest import TEXTS, save_tiny_classifier

GENERATED_AT = datetime(2024, 5, 17, 9, 30, tzinfo=UTC)


@dataclasses.dataclass(frozen=True)
class SeededRun:
    db: Path
    run_id: str
    config: AuditConfig
    seed_folder: Path
    written: int
    written_again: int


@pytest.fixture(scope="module")
def seeded_run(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> SeededRun:
    """The tiny model audited on the standard texts with adversarial attention, and one other seed."""
    folder = tmp_path_factory.mktemp("seeded")
    corpus = folder / "reviews.csv"
    pd.DataFrame({"text": [*TEXTS, "a slow start, then a fine finale", "not for me"]}).to_csv(corpus, index=False)
    seed_folder = save_tiny_classifier(folder / "seed-1", seed=1)
    config = resolve(
        AuditConfig(
            model=ModelSpec(name_or_path=str(tiny_model_dir)),
            data=DataSpec(dataset=str(corpus), label_column=None),
            methods=MethodOptions(
                methods=("attention_last", "leave_one_out", "integrated_gradients", "random"),
                ig_steps=4,
                ig_rule="gausslegendre",
            ),
            interventions=InterventionOptions(interventions=("adversarial",), adversarial_steps=10),
            seeds=SeedOptions(models=(str(seed_folder),)),
        )
    )
    plan = plan_run(config)
    db = folder / "audit.duckdb"
    bundle = load_model(config.model)
    result = audit_batch(bundle, list(plan.examples), plan.config.methods, plan.config.interventions, config.execution)
    with store.connect(db) as connection:
        store.register_run(connection, plan.run_id, plan.config.model_dump(mode="json"), plan.manifest)
        store.write_batch(connection, plan.run_id, result, plan.labels)
        store.finish_run(connection, plan.run_id)
    judge_run_task.fn(db, plan.run_id, plan.methods, config.verdict)
    written = seed_baseline_task.fn(db, plan.run_id, config)
    written_again = seed_baseline_task.fn(db, plan.run_id, config)
    return SeededRun(db, plan.run_id, config, seed_folder, written, written_again)


@pytest.fixture(scope="module")
def tables(seeded_run: SeededRun) -> dict[str, pd.DataFrame]:
    with store.connect(seeded_run.db, read_only=True) as connection:
        return {
            name: store.read_table(connection, name, seeded_run.run_id)
            for name in ("seed_distances", "seed_agreement", "interventions")
        } | {"manifest": store.read_run(connection, seeded_run.run_id)["manifest"]}


@pytest.fixture(scope="module")
def context(seeded_run: SeededRun) -> report.ReportContext:
    with store.connect(seeded_run.db, read_only=True) as connection:
        return report.build_context(connection, seeded_run.run_id, generated_at=GENERATED_AT)


def test_the_task_stores_every_example_once_and_does_not_redo_a_stored_baseline(
    seeded_run: SeededRun, tables: dict
) -> None:
    distances, agreement = tables["seed_distances"], tables["seed_agreement"]
    assert seeded_run.written == len(distances) + len(agreement) > 0
    assert seeded_run.written_again == 0
    assert len(distances) == 7 * 4 and set(distances["layer"]) == {1}
    assert set(agreement["method"]) == {"attention_last", "leave_one_out", "integrated_gradients"}


def test_the_manifest_names_each_seed_model_with_its_weights(seeded_run: SeededRun, tables: dict) -> None:
    (model,) = tables["manifest"]["seeds"]["models"]
    assert model["path"] == str(seeded_run.seed_folder.resolve())
    assert model["fingerprint"] == load_model(ModelSpec(name_or_path=str(seeded_run.seed_folder))).fingerprint


def test_the_report_shows_the_stored_means_and_the_adversary_beside_them(
    context: report.ReportContext, tables: dict
) -> None:
    distances, interventions = tables["seed_distances"], tables["interventions"]
    assert context.seeds is not None
    (layer,) = context.seeds.layers
    jsd = distances[distances["statistic"] == "attention_jsd"].set_index("example_id")["value"]
    adversarial = interventions[
        (interventions["intervention"] == "adversarial") & (interventions["statistic"] == "jsd")
    ]
    adversarial = adversarial.set_index("example_id")["value"]
    assert layer.attention_jsd.mean == pytest.approx(jsd.mean())
    assert layer.adversarial_jsd is not None and layer.adversarial_jsd.mean == pytest.approx(adversarial.mean())
    assert layer.beyond_seeds == pytest.approx((adversarial > jsd[adversarial.index]).mean())


def test_the_section_the_chart_and_the_summary_sentence_render(context: report.ReportContext) -> None:
    html = report.render_html(context)
    match = re.search(r'<section id="seeds">(.*?)</section>', html, flags=re.S)
    assert match is not None and '<a href="#seeds">' in html
    body = match.group(1)
    assert context.seeds is not None
    assert f"{context.seeds.layers[0].attention_jsd.mean:.3f}" in body
    assert "seed-1" in body and "data:image/svg+xml;base64," in body
    assert all(row.title in body for row in context.seeds.stability)
    assert any(sentence.startswith("Seed baseline (Wiegreffe & Pinter 2019)") for sentence in context.summary)


def agreement_frames(across: list[float], with_reference: list[float]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``rollout``'s τ across one other seed and with the reference ``leave_one_out``, per example."""
    ids = [str(i) for i in range(len(across))]
    seeds = pd.DataFrame({"example_id": ids, "seed_model": "s1", "method": "rollout", "kendall_tau": across})
    metrics = pd.DataFrame(
        {"example_id": ids, "method": "rollout", "reference": "leave_one_out", "metric": "kendall_tau",
         "draw": 0, "value": with_reference}
    )  # fmt: skip
    return seeds, metrics


@pytest.mark.parametrize(
    ("across", "reference", "result"),
    [(0.1, 0.6, "changes with the seed"), (0.9, 0.3, "stable"), (0.5, 0.5, "unclear")],
)
def test_an_explanation_less_stable_across_seeds_than_its_agreement_is_flagged(
    across: float, reference: float, result: str
) -> None:
    noise = [(-1) ** i * 0.05 for i in range(30)]
    seeds, metrics = agreement_frames([across + e for e in noise], [reference + e / 2 for e in noise])
    (row,) = stability_rows(seeds, metrics, ("leave_one_out", "integrated_gradients"), seed=0)

    assert row.result == result
    assert row.across_seeds.mean == pytest.approx(across) and row.with_references.mean == pytest.approx(reference)
    if result == "changes with the seed":
        shown = SeedReport(models=("s1",), examples=30, layers=(), stability=(row,))
        (sentence,) = seed_sentences(shown)
        assert sentence.endswith("more than they agree with the references: attention rollout.")
