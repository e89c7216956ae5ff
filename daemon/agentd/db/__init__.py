"""The SQLite side: migrations, the one writer (store), read-only access."""
