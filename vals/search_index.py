"""The full-text index over val names, readmes and code, in the database's own engine.

PostgreSQL: a generated tsvector column with a GIN index.
SQLite: an FTS5 table kept in step with vals_val by triggers. SQLite migrations that
rebuild vals_val drop its triggers, so `ensure` runs after every migrate and puts back
whatever is missing.
"""

POSTGRES = [
    # tsvector holds at most 1 MB, so only the start of very large vals is indexed.
    """
    ALTER TABLE vals_val ADD COLUMN IF NOT EXISTS search_document tsvector GENERATED ALWAYS AS (
        to_tsvector('simple', name || ' ' || left(readme, 100000) || ' ' || left(code, 200000))
    ) STORED
    """,
    "CREATE INDEX IF NOT EXISTS vals_val_search_document_idx ON vals_val USING GIN (search_document)",
]

SQLITE_TABLE = """
    CREATE VIRTUAL TABLE IF NOT EXISTS vals_val_fts USING fts5(
        name, readme, code, content='vals_val', content_rowid='id', tokenize="unicode61 tokenchars '_'"
    )
"""
SQLITE_TRIGGERS = {
    "vals_val_fts_insert": """
        CREATE TRIGGER vals_val_fts_insert AFTER INSERT ON vals_val BEGIN
            INSERT INTO vals_val_fts(rowid, name, readme, code) VALUES (new.id, new.name, new.readme, new.code);
        END
    """,
    "vals_val_fts_delete": """
        CREATE TRIGGER vals_val_fts_delete AFTER DELETE ON vals_val BEGIN
            INSERT INTO vals_val_fts(vals_val_fts, rowid, name, readme, code)
            VALUES ('delete', old.id, old.name, old.readme, old.code);
        END
    """,
    "vals_val_fts_update": """
        CREATE TRIGGER vals_val_fts_update AFTER UPDATE OF name, readme, code ON vals_val BEGIN
            INSERT INTO vals_val_fts(vals_val_fts, rowid, name, readme, code)
            VALUES ('delete', old.id, old.name, old.readme, old.code);
            INSERT INTO vals_val_fts(rowid, name, readme, code) VALUES (new.id, new.name, new.readme, new.code);
        END
    """,
}


def ensure(connection):
    """Create whatever part of the index is missing. Safe to run any number of times."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            for statement in POSTGRES:
                cursor.execute(statement)
        elif connection.vendor == "sqlite":
            cursor.execute(SQLITE_TABLE)
            cursor.execute("SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'vals_val'")
            present = {row[0] for row in cursor.fetchall()}
            missing = [sql for name, sql in SQLITE_TRIGGERS.items() if name not in present]
            for statement in missing:
                cursor.execute(statement)
            if missing:
                cursor.execute("INSERT INTO vals_val_fts(vals_val_fts) VALUES ('rebuild')")
