"""Opening a database: foreign, corrupt or newer files are refused untouched; older ones are migrated."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import duckdb
import numpy as np
import pytest

from tasks import store
from tasks.errors import AuditError
from tasks.records import BatchResult
from tasks.store.connection import SPILL_PREFIX, remove_orphaned_spill_folders
from tests.store.conftest import RUN

# --- files that are not ours -----------------------------------------------------------------


def test_a_file_of_random_bytes_is_refused_and_left_byte_identical(tmp_path: Path) -> None:
    path = tmp_path / "noise.duckdb"
    path.write_bytes(np.random.default_rng(0).bytes(8192))
    before = path.read_bytes()

    with pytest.raises(AuditError, match="not a readable DuckDB database"):
        with store.connect(path):
            pass

    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["noise.duckdb"]


def test_a_database_of_another_application_is_refused_and_left_untouched(tmp_path: Path) -> None:
    path = tmp_path / "shop.duckdb"
    foreign = duckdb.connect(str(path))
    foreign.execute("CREATE TABLE orders (id INTEGER, total DOUBLE)")
    foreign.execute("INSERT INTO orders VALUES (1, 9.5), (2, 3.25)")
    foreign.close()
    before = path.read_bytes()

    with pytest.raises(AuditError, match="another application") as raised:
        with store.connect(path):
            pass

    assert "orders" in raised.value.problem
    assert path.read_bytes() == before
    with duckdb.connect(str(path), read_only=True) as reopened:
        tables = {row[0] for row in reopened.execute("SELECT table_name FROM information_schema.tables").fetchall()}
    assert tables == {"orders"}


@pytest.mark.parametrize("read_only", [False, True], ids=["read-write", "read-only"])
def test_a_database_of_a_newer_schema_is_refused(tmp_path: Path, read_only: bool) -> None:
    path = tmp_path / "future.duckdb"
    with store.connect(path) as created:
        created.execute(
            "UPDATE schema_info SET value = ? WHERE key = 'schema_version'", [str(store.SCHEMA_VERSION + 1)]
        )

    with pytest.raises(AuditError, match="newer attention-audit") as raised:
        with store.connect(path, read_only=read_only):
            pass

    assert "upgrade" in raised.value.fix


def test_a_new_database_records_the_schema_version(tmp_path: Path) -> None:
    path = tmp_path / "new.duckdb"
    with store.connect(path):
        pass

    with store.connect(path, read_only=True) as reopened:
        version = reopened.execute("SELECT value FROM schema_info WHERE key = 'schema_version'").fetchone()
    assert version == (str(store.SCHEMA_VERSION),)


def test_read_only_connect_of_a_missing_path_is_refused_and_creates_nothing(tmp_path: Path) -> None:
    path = tmp_path / "nowhere" / "audit.duckdb"

    with pytest.raises(AuditError, match="no database at"):
        with store.connect(path, read_only=True):
            pass

    assert not path.parent.exists()


def test_a_database_whose_folder_is_a_file_is_refused(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where a folder should be")

    with pytest.raises(AuditError, match="cannot create the folder"):
        with store.connect(blocker / "audit.duckdb"):
            pass


def test_a_version_1_database_is_migrated_in_place_with_its_data_kept(
    tmp_path: Path, result: BatchResult, labels: tuple[str, ...]
) -> None:
    path = tmp_path / "old.duckdb"
    later = {statement for statements in store.MIGRATIONS.values() for statement in statements}
    version_1 = [statement for statement in store.DDL if statement not in later]
    with duckdb.connect(str(path)) as old:
        for statement in version_1:
            old.execute(statement)
        old.execute("INSERT INTO schema_info VALUES ('schema_version', '1'), ('created_by', 'attention-audit 0.1.0')")
        old.execute("INSERT INTO runs VALUES ('old-run', 'finished', now(), now(), '{}', '{}')")
    with store.connect(path, read_only=True) as reading:  # reading an old file changes nothing
        assert store.read_table(reading, "interventions", "old-run").empty
    with store.connect(path) as upgraded:
        version = upgraded.execute("SELECT value FROM schema_info WHERE key = 'schema_version'").fetchone()
        assert version == (str(store.SCHEMA_VERSION),)
        assert store.read_run(upgraded, "old-run")["status"] == "finished"
        store.write_batch(upgraded, RUN, result, labels)
        assert len(store.read_table(upgraded, "interventions", RUN)) == len(result.interventions)


def database_of_version(path: Path, version: int) -> None:
    """Create the database an earlier ``version`` created: without what later migrations add."""
    later = [statement for step in range(version, store.SCHEMA_VERSION) for statement in store.MIGRATIONS[step]]
    created = [statement for statement in store.DDL if statement not in later]
    added = [re.match(r"ALTER TABLE (\w+) ADD COLUMN IF NOT EXISTS (\w+)", statement) for statement in later]
    with duckdb.connect(str(path)) as old:
        for statement in created:
            old.execute(statement)
        for match in (match for match in added if match and store.TABLES[match[1]] in created):
            old.execute(f"ALTER TABLE {match[1]} DROP COLUMN {match[2]}")
        old.execute("INSERT INTO schema_info VALUES ('schema_version', ?), ('created_by', 'old')", [str(version)])
        old.execute("INSERT INTO runs VALUES ('old-run', 'finished', now(), now(), '{}', '{}')")
        old.execute(
            "INSERT INTO examples BY NAME SELECT 'old-run' AS run_id, 'x' AS example_id, 'b' AS batch_id,"
            " 'text' AS text, 0 AS predicted, 'no' AS predicted_name, 1.0 AS confidence, [1.0] AS probabilities,"
            " 1 AS n_tokens, 0 AS n_content_tokens, 1 AS n_original_tokens, false AS truncated, '{}' AS metadata"
        )
        old.execute(
            "INSERT INTO tokens BY NAME SELECT 'old-run' AS run_id, 'x' AS example_id, 0 AS position,"
            " 101 AS token_id, '[CLS]' AS token, true AS is_special, 0 AS char_start, 0 AS char_end"
        )


def columns(connection: duckdb.DuckDBPyConnection) -> dict[str, list[tuple[str, str]]]:
    """Every table's (column, type) pairs in order."""
    tables = [row[0] for row in connection.execute("SELECT table_name FROM information_schema.tables").fetchall()]
    return {table: [row[:2] for row in connection.execute(f"DESCRIBE {table}").fetchall()] for table in tables}


@pytest.mark.parametrize("version", range(1, store.SCHEMA_VERSION))
def test_a_database_of_every_earlier_version_migrates_to_the_current_schema(tmp_path: Path, version: int) -> None:
    database_of_version(tmp_path / "old.duckdb", version)
    with store.connect(tmp_path / "new.duckdb") as fresh:
        expected = columns(fresh)

    with store.connect(tmp_path / "old.duckdb") as upgraded:
        assert columns(upgraded) == expected
        assert store.read_table(upgraded, "tokens", "old-run")["segment"].tolist() == [0]
        assert store.read_table(upgraded, "examples", "old-run")["text_pair"].isna().all()
        indexes = {row[0] for row in upgraded.execute("SELECT index_name FROM duckdb_indexes()").fetchall()}
    assert indexes == {"metrics_by_example", "interventions_by_example", "head_agreement_by_example"}


def test_an_older_database_is_only_read_without_being_migrated(tmp_path: Path) -> None:
    path = tmp_path / "old.duckdb"
    database_of_version(path, 5)

    with store.connect(path, read_only=True) as reading:
        assert store.read_table(reading, "not_applicable", "old-run").empty
    with duckdb.connect(str(path), read_only=True) as reopened:
        assert reopened.execute("SELECT value FROM schema_info WHERE key = 'schema_version'").fetchone() == ("5",)


def test_a_version_6_database_gains_the_seed_tables_and_reads_as_empty_before(tmp_path: Path) -> None:
    path = tmp_path / "v6.duckdb"
    database_of_version(path, 6)

    with store.connect(path, read_only=True) as reading:
        assert store.read_table(reading, "seed_distances", "old-run").empty
    with store.connect(path) as upgraded:
        assert list(store.read_table(upgraded, "seed_agreement", "old-run").columns) == list(
            store.table_columns("seed_agreement")
        )
        assert store.read_table(upgraded, "examples", "old-run")["example_id"].tolist() == ["x"]


def test_a_read_only_connection_bounds_duckdb_memory(tmp_path: Path) -> None:
    path = tmp_path / "audit.duckdb"
    with store.connect(path):
        pass
    with store.connect(path, read_only=True) as connection:
        limit = connection.execute("SELECT current_setting('memory_limit')").fetchall()[0][0]
    assert limit == "1.8 GiB"  # READ_MEMORY_LIMIT, 2 GB, as DuckDB prints it


def test_read_only_connections_spill_into_the_process_folder_never_beside_the_file(tmp_path: Path) -> None:
    """Never beside the file: an auditor's copy may sit in a folder nobody may write to."""
    path = tmp_path / "audit.duckdb"
    with store.connect(path):
        pass
    with store.connect(path, read_only=True) as connection, store.connect(path, read_only=True) as another:
        spill = Path(connection.execute("SELECT current_setting('temp_directory')").fetchall()[0][0])
        connection.execute("SET memory_limit = '20MB'")  # small enough for this sort to spill
        rows = connection.execute("SELECT count(*) FROM (SELECT range % 977 AS r FROM range(3000000) ORDER BY r)")
        assert rows.fetchall()[0][0] == 3_000_000
        assert another.execute("SELECT current_setting('temp_directory')").fetchall()[0][0] == str(spill)
    assert spill.is_dir() and tmp_path not in spill.parents
    assert sorted(p.name for p in tmp_path.iterdir()) == ["audit.duckdb"]


def test_the_spill_folder_goes_with_the_process(tmp_path: Path) -> None:
    script = "from tasks.store.connection import spill_folder; print(spill_folder())"
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=120)

    assert not Path(done.stdout.strip()).exists()


def test_a_spill_folder_left_by_an_ended_process_is_removed_by_the_next_one(tmp_path: Path) -> None:
    """A killed process runs no exit handler, so its folder stays until another process sees it has ended."""
    ended = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    orphan = tmp_path / f"{SPILL_PREFIX}{ended.stdout.strip()}-abc123"
    mine = tmp_path / f"{SPILL_PREFIX}{os.getpid()}-def456"
    not_a_spill_folder = tmp_path / f"{SPILL_PREFIX}notes"
    for folder in (orphan, mine, not_a_spill_folder):
        folder.mkdir()
    (orphan / "duckdb_temp_block-1.block").write_bytes(b"spilled")

    removed = remove_orphaned_spill_folders(tmp_path)

    assert removed == [orphan]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([mine.name, not_a_spill_folder.name])
