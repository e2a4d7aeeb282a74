"""The schema of an attention-audit database (version 7): tables, indexes and the migrations to it.

Long format, one row per fact, every table keyed by ``run_id``:

``runs``          one row per audit configuration: ``run_id``, ``status`` (running / finished / finished
                  with failures), ``config`` and ``manifest`` (JSON: model and data fingerprints,
                  versions), times.
``examples``      one row per audited example: text (and ``text_pair``, the second text of a pair), gold
                  and predicted label, probabilities, confidence, token counts, truncation, corpus
                  metadata (JSON), ``batch_id``.
``tokens``        one row per token: id, string, whether it is special, character span in its text,
                  ``segment`` (0 for ``text``, 1 for ``text_pair``) and whether it lies in the human
                  rationale (NULL when the example has none).
``token_scores``  one row per (example, method, draw, position): the method's score.
``metrics``       one row per (example, method, draw, metric[, reference][, k]): the value. ``reference``
                  is set for agreement metrics, ``k`` for per-rationale-size faithfulness.
``interventions`` one row per (example, intervention, layer, head, statistic): the value. ``layer`` is
                  NULL when every layer was changed at once, ``head`` when every head of the layer was.
``head_agreement`` one row per (example, layer, head, reference, statistic): how a head's classification
                  row ranks tokens against a reference.
``failures``      one row per example whose batch failed after its retries: the error and the number of
                  attempts. A later successful write of the example removes its row.
``costs``         one row per (batch, stage): seconds, forward/backward rows and tokens.
``example_verdicts`` one row per (example, attention method): the verdict, its reason and the six
                  evidence numbers (see ``tasks.verdict.evidence``).
``slice_verdicts`` one row per (method, slice, slice value): size, verdict, reason, the status of each
                  kind of evidence and each evidence's mean with its 95 % interval. Rows of the
                  method ``attention heads`` judge layers and heads.
``agreement_matrix`` one row per (slice, method pair, statistic): mean Kendall τ or top-k overlap of every
                  method with every other, with its 95 % interval.
``sanity_checks`` one row per (example, method, stage) of the model-randomisation cascade: Spearman
                  ρ between the explanation on the original and on the randomised model (signed and of
                  absolute values); stage 0 randomises the classification head, stage s also the top s
                  layers.
``not_applicable`` one row per (kind, name) of configured work this model cannot support, with the reason.
``seed_distances`` one row per (example, seed model, layer, statistic) of the seed baseline: how far another
                  fine-tuning's classification-row attention (``attention_jsd``, ``attention_tvd``, mean over
                  heads) and output (``output_tvd``, ``prediction_kept``) lie from the audited model's.
``seed_agreement`` one row per (example, seed model, method): Kendall τ between the method's explanation on
                  the audited model and on the seed model.
``schema_info``   the schema version and the tool version that created the file.

Version 1 lacked ``interventions`` and ``head_agreement``; version 2 the verdict tables and
``tokens.in_rationale``; version 3 ``failures``; version 4 ``agreement_matrix``, ``sanity_checks`` and
the reference-consistency columns; version 5 ``not_applicable``, ``examples.text_pair`` and
``tokens.segment``; version 6 ``seed_distances`` and ``seed_agreement``. Opening an older file for
writing applies ``MIGRATIONS`` (``tasks.store.connection``).

This module holds SQL text only; it does not import duckdb.
"""

from __future__ import annotations

import re
from functools import cache

SCHEMA_VERSION = 7

TABLES: dict[str, str] = {
    "schema_info": """
    CREATE TABLE IF NOT EXISTS schema_info (
        key VARCHAR PRIMARY KEY,
        value VARCHAR NOT NULL
    )""",
    "runs": """
    CREATE TABLE IF NOT EXISTS runs (
        run_id VARCHAR PRIMARY KEY,
        status VARCHAR NOT NULL,
        created_at TIMESTAMP NOT NULL,
        updated_at TIMESTAMP NOT NULL,
        config JSON NOT NULL,
        manifest JSON NOT NULL
    )""",
    "examples": """
    CREATE TABLE IF NOT EXISTS examples (
        run_id VARCHAR NOT NULL,
        example_id VARCHAR NOT NULL,
        batch_id VARCHAR NOT NULL,
        text VARCHAR NOT NULL,
        label INTEGER,
        label_name VARCHAR,
        predicted INTEGER NOT NULL,
        predicted_name VARCHAR NOT NULL,
        confidence DOUBLE NOT NULL,
        probabilities DOUBLE[] NOT NULL,
        n_tokens INTEGER NOT NULL,
        n_content_tokens INTEGER NOT NULL,
        n_original_tokens INTEGER NOT NULL,
        truncated BOOLEAN NOT NULL,
        metadata JSON NOT NULL,
        text_pair VARCHAR,
        PRIMARY KEY (run_id, example_id)
    )""",
    "tokens": """
    CREATE TABLE IF NOT EXISTS tokens (
        run_id VARCHAR NOT NULL,
        example_id VARCHAR NOT NULL,
        position INTEGER NOT NULL,
        token_id BIGINT NOT NULL,
        token VARCHAR NOT NULL,
        is_special BOOLEAN NOT NULL,
        char_start INTEGER NOT NULL,
        char_end INTEGER NOT NULL,
        in_rationale BOOLEAN,
        segment INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (run_id, example_id, position)
    )""",
    "token_scores": """
    CREATE TABLE IF NOT EXISTS token_scores (
        run_id VARCHAR NOT NULL,
        example_id VARCHAR NOT NULL,
        method VARCHAR NOT NULL,
        draw INTEGER NOT NULL,
        position INTEGER NOT NULL,
        score DOUBLE NOT NULL,
        PRIMARY KEY (run_id, example_id, method, draw, position)
    )""",
    "metrics": """
    CREATE TABLE IF NOT EXISTS metrics (
        run_id VARCHAR NOT NULL,
        example_id VARCHAR NOT NULL,
        method VARCHAR NOT NULL,
        draw INTEGER NOT NULL,
        metric VARCHAR NOT NULL,
        reference VARCHAR,
        k DOUBLE,
        value DOUBLE
    )""",
    "interventions": """
    CREATE TABLE IF NOT EXISTS interventions (
        run_id VARCHAR NOT NULL,
        example_id VARCHAR NOT NULL,
        intervention VARCHAR NOT NULL,
        layer INTEGER,
        head INTEGER,
        statistic VARCHAR NOT NULL,
        value DOUBLE
    )""",
    "head_agreement": """
    CREATE TABLE IF NOT EXISTS head_agreement (
        run_id VARCHAR NOT NULL,
        example_id VARCHAR NOT NULL,
        layer INTEGER NOT NULL,
        head INTEGER NOT NULL,
        reference VARCHAR NOT NULL,
        statistic VARCHAR NOT NULL,
        value DOUBLE
    )""",
    "failures": """
    CREATE TABLE IF NOT EXISTS failures (
        run_id VARCHAR NOT NULL,
        example_id VARCHAR NOT NULL,
        batch_id VARCHAR NOT NULL,
        error_type VARCHAR NOT NULL,
        message VARCHAR NOT NULL,
        attempts INTEGER NOT NULL,
        failed_at TIMESTAMP NOT NULL
    )""",
    "costs": """
    CREATE TABLE IF NOT EXISTS costs (
        run_id VARCHAR NOT NULL,
        batch_id VARCHAR NOT NULL,
        stage VARCHAR NOT NULL,
        examples INTEGER NOT NULL,
        seconds DOUBLE NOT NULL,
        forward_rows BIGINT NOT NULL,
        forward_tokens BIGINT NOT NULL,
        backward_rows BIGINT NOT NULL,
        backward_tokens BIGINT NOT NULL,
        PRIMARY KEY (run_id, batch_id, stage)
    )""",
    "example_verdicts": """
    CREATE TABLE IF NOT EXISTS example_verdicts (
        run_id VARCHAR NOT NULL,
        example_id VARCHAR NOT NULL,
        method VARCHAR NOT NULL,
        verdict VARCHAR NOT NULL,
        reason VARCHAR NOT NULL,
        agreement DOUBLE,
        comprehensiveness DOUBLE,
        sufficiency DOUBLE,
        erasure DOUBLE,
        sensitivity DOUBLE,
        consistency DOUBLE
    )""",
    "slice_verdicts": """
    CREATE TABLE IF NOT EXISTS slice_verdicts (
        run_id VARCHAR NOT NULL,
        method VARCHAR NOT NULL,
        slice VARCHAR NOT NULL,
        slice_value VARCHAR NOT NULL,
        n INTEGER NOT NULL,
        verdict VARCHAR NOT NULL,
        reason VARCHAR NOT NULL,
        agreement VARCHAR NOT NULL,
        faithfulness VARCHAR NOT NULL,
        interventions VARCHAR NOT NULL,
        agreement_mean DOUBLE, agreement_low DOUBLE, agreement_high DOUBLE,
        comprehensiveness_mean DOUBLE, comprehensiveness_low DOUBLE, comprehensiveness_high DOUBLE,
        sufficiency_mean DOUBLE, sufficiency_low DOUBLE, sufficiency_high DOUBLE,
        erasure_mean DOUBLE, erasure_low DOUBLE, erasure_high DOUBLE,
        sensitivity_mean DOUBLE, sensitivity_low DOUBLE, sensitivity_high DOUBLE,
        importance_mean DOUBLE, importance_low DOUBLE, importance_high DOUBLE,
        consistency_mean DOUBLE, consistency_low DOUBLE, consistency_high DOUBLE
    )""",
    "agreement_matrix": """
    CREATE TABLE IF NOT EXISTS agreement_matrix (
        run_id VARCHAR NOT NULL,
        slice VARCHAR NOT NULL,
        slice_value VARCHAR NOT NULL,
        method VARCHAR NOT NULL,
        other VARCHAR NOT NULL,
        statistic VARCHAR NOT NULL,
        n INTEGER NOT NULL,
        mean DOUBLE, low DOUBLE, high DOUBLE
    )""",
    "sanity_checks": """
    CREATE TABLE IF NOT EXISTS sanity_checks (
        run_id VARCHAR NOT NULL,
        example_id VARCHAR NOT NULL,
        method VARCHAR NOT NULL,
        stage INTEGER NOT NULL,
        randomised VARCHAR NOT NULL,
        spearman DOUBLE,
        spearman_absolute DOUBLE
    )""",
    "not_applicable": """
    CREATE TABLE IF NOT EXISTS not_applicable (
        run_id VARCHAR NOT NULL,
        kind VARCHAR NOT NULL,
        name VARCHAR NOT NULL,
        reason VARCHAR NOT NULL,
        PRIMARY KEY (run_id, kind, name)
    )""",
    "seed_distances": """
    CREATE TABLE IF NOT EXISTS seed_distances (
        run_id VARCHAR NOT NULL,
        example_id VARCHAR NOT NULL,
        seed_model VARCHAR NOT NULL,
        layer INTEGER NOT NULL,
        statistic VARCHAR NOT NULL,
        value DOUBLE
    )""",
    "seed_agreement": """
    CREATE TABLE IF NOT EXISTS seed_agreement (
        run_id VARCHAR NOT NULL,
        example_id VARCHAR NOT NULL,
        seed_model VARCHAR NOT NULL,
        method VARCHAR NOT NULL,
        kendall_tau DOUBLE
    )""",
}
"""The ``CREATE TABLE`` statement of every table, by name, in creation order."""
INDEXES: dict[str, str] = {
    "metrics": "CREATE INDEX IF NOT EXISTS metrics_by_example ON metrics (run_id, example_id)",
    "interventions": "CREATE INDEX IF NOT EXISTS interventions_by_example ON interventions (run_id, example_id)",
    "head_agreement": "CREATE INDEX IF NOT EXISTS head_agreement_by_example ON head_agreement (run_id, example_id)",
}
"""The ``CREATE INDEX`` statement of each indexed table, by table."""
DDL: tuple[str, ...] = (*TABLES.values(), *INDEXES.values())
"""Every statement that creates a database of the current version, in order."""


def _creating(*tables: str) -> tuple[str, ...]:
    """The statements that create ``tables`` and their indexes."""
    return (*(TABLES[table] for table in tables), *(INDEXES[table] for table in tables if table in INDEXES))


MIGRATIONS: dict[int, tuple[str, ...]] = {
    1: _creating("interventions", "head_agreement"),
    2: (
        *_creating("example_verdicts", "slice_verdicts"),
        "ALTER TABLE tokens ADD COLUMN IF NOT EXISTS in_rationale BOOLEAN",
    ),
    3: _creating("failures"),
    4: (
        *_creating("agreement_matrix", "sanity_checks"),
        "ALTER TABLE example_verdicts ADD COLUMN IF NOT EXISTS consistency DOUBLE",
        *(
            f"ALTER TABLE slice_verdicts ADD COLUMN IF NOT EXISTS consistency_{end} DOUBLE"
            for end in ("mean", "low", "high")
        ),
    ),
    5: (
        *_creating("not_applicable"),
        "ALTER TABLE examples ADD COLUMN IF NOT EXISTS text_pair VARCHAR",
        "ALTER TABLE tokens ADD COLUMN IF NOT EXISTS segment INTEGER DEFAULT 0",
    ),
    6: _creating("seed_distances", "seed_agreement"),
}
"""Statements that take a database from a version to the next (key: the version migrated from)."""

RESULT_TABLES = ("examples", "tokens", "token_scores", "metrics", "interventions", "head_agreement")
"""The tables a batch writes per example (``costs`` is written per batch)."""
VERDICT_TABLES = ("example_verdicts", "slice_verdicts", "agreement_matrix")
"""The tables replaced as a whole when a run's verdicts are computed."""
OUR_TABLES = frozenset(TABLES)
"""Every table of the schema: ``tasks.store.read.read_table`` reads only these."""


@cache
def table_columns(table: str) -> tuple[str, ...]:
    """The column names of ``table`` in the order its ``CREATE TABLE`` statement declares them.

    Raises:
        KeyError: ``table`` is not a table of the schema.
    """
    statement = TABLES[table]
    body = statement[statement.index("(") + 1 : statement.rindex(")")]
    definitions = (part.strip() for part in re.split(r",(?![^()]*\))", body))  # commas outside parentheses
    return tuple(part.split()[0] for part in definitions if part and not part.upper().startswith("PRIMARY KEY"))
