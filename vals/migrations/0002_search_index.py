"""A full-text index over val names, readmes and code, in the database's own engine.

PostgreSQL: a generated tsvector column with a GIN index.
SQLite: an FTS5 table kept in step with vals_val by triggers.
"""

from django.db import migrations

POSTGRES_FORWARD = [
    # tsvector holds at most 1 MB, so only the start of very large vals is indexed.
    """
    ALTER TABLE vals_val ADD COLUMN search_document tsvector GENERATED ALWAYS AS (
        to_tsvector('simple', name || ' ' || left(readme, 100000) || ' ' || left(code, 200000))
    ) STORED
    """,
    "CREATE INDEX vals_val_search_document_idx ON vals_val USING GIN (search_document)",
]
POSTGRES_BACKWARD = [
    "DROP INDEX IF EXISTS vals_val_search_document_idx",
    "ALTER TABLE vals_val DROP COLUMN IF EXISTS search_document",
]

SQLITE_FORWARD = [
    """
    CREATE VIRTUAL TABLE vals_val_fts USING fts5(
        name, readme, code, content='vals_val', content_rowid='id', tokenize="unicode61 tokenchars '_'"
    )
    """,
    """
    CREATE TRIGGER vals_val_fts_insert AFTER INSERT ON vals_val BEGIN
        INSERT INTO vals_val_fts(rowid, name, readme, code) VALUES (new.id, new.name, new.readme, new.code);
    END
    """,
    """
    CREATE TRIGGER vals_val_fts_delete AFTER DELETE ON vals_val BEGIN
        INSERT INTO vals_val_fts(vals_val_fts, rowid, name, readme, code)
        VALUES ('delete', old.id, old.name, old.readme, old.code);
    END
    """,
    """
    CREATE TRIGGER vals_val_fts_update AFTER UPDATE OF name, readme, code ON vals_val BEGIN
        INSERT INTO vals_val_fts(vals_val_fts, rowid, name, readme, code)
        VALUES ('delete', old.id, old.name, old.readme, old.code);
        INSERT INTO vals_val_fts(rowid, name, readme, code) VALUES (new.id, new.name, new.readme, new.code);
    END
    """,
    "INSERT INTO vals_val_fts(vals_val_fts) VALUES ('rebuild')",
]
SQLITE_BACKWARD = [
    "DROP TRIGGER IF EXISTS vals_val_fts_update",
    "DROP TRIGGER IF EXISTS vals_val_fts_delete",
    "DROP TRIGGER IF EXISTS vals_val_fts_insert",
    "DROP TABLE IF EXISTS vals_val_fts",
]

STATEMENTS = {
    "postgresql": (POSTGRES_FORWARD, POSTGRES_BACKWARD),
    "sqlite": (SQLITE_FORWARD, SQLITE_BACKWARD),
}


def run(direction):
    def apply(apps, schema_editor):
        forward, backward = STATEMENTS.get(schema_editor.connection.vendor, ([], []))
        for statement in forward if direction == "forward" else backward:
            schema_editor.execute(statement)

    return apply


class Migration(migrations.Migration):
    dependencies = [("vals", "0001_initial")]

    operations = [migrations.RunPython(run("forward"), run("backward"))]
