"""Publish an embedded (SQLite) profile into a PostgreSQL profile store: every table, replacing what was there.

``recllm build --profile-url postgresql://…`` builds the profile in the artifact folder's SQLite file like every
build (the trainers read it there) and then publishes it with ``copy_sqlite_profile``, so ``recllm serve
--profile-url`` serves, ingests into, refreshes, expires and forgets on PostgreSQL. The same function moves an
existing deployment's profile file to PostgreSQL.

The copy runs in one PostgreSQL transaction: the target's profile tables (and the users' profile versions) are
emptied (``TRUNCATE``) and filled by ``COPY``; readers see the old profile or the new one, never a mix. Events are
copied in SQLite insertion order (``rowid``), so PostgreSQL's ``event_seq`` keeps the order of events with equal
timestamps.
"""

from __future__ import annotations

import logging

from psycopg import sql

from recllm.profile.postgres_store import PostgresProfileStore
from recllm.profile.sqlite_store import ProfileStore

log = logging.getLogger(__name__)

# Every table of the profile, with the columns both backends share (PostgreSQL's ``event_seq`` is generated).
PROFILE_TABLES: dict[str, tuple[str, ...]] = {
    "users": ("user_id", "age_band", "region"),
    "events": ("user_id", "service", "item_id", "kind", "ts", "basket_id", "price", "quantity", "region", "device",
               "event_id"),
    "fragments": ("user_id", "fragment_key", "service", "category_id", "text_ru", "text_en", "sensitive", "weight",
                  "vector"),
    "item_popularity": ("item_id", "purchases"),
    "history_summaries": ("user_id", "level", "start_ts", "end_ts", "summary"),
    "temporal_histograms": ("user_id", "service", "hours", "weekdays"),
    "privacy_ledger": ("user_id", "window_start", "window_end", "epsilon_spent", "delta_spent", "releases"),
    "privacy_mechanisms": ("user_id", "window_start", "mechanism_index", "kind", "noise_multiplier", "sample_rate",
                           "steps", "ts"),
    "released_preferences": ("user_id", "window_start", "release_index", "released_ts", "epsilon", "delta", "sigma",
                             "clip_norm", "history_digest", "pref_long", "pref_short"),
    "privacy_secret": ("id", "secret"),
    "pending_refresh": ("user_id", "commit_seq"),
}
BOOLEAN_COLUMNS = {("fragments", "sensitive")}  # SQLite stores 0/1


def copy_sqlite_profile(source: ProfileStore, target: PostgresProfileStore) -> dict[str, int]:
    """Replace the whole profile in ``target`` by ``source``'s; returns rows copied per table."""
    if target.config.read_only:
        raise ValueError("copy_sqlite_profile: the target PostgreSQL store is read-only")
    reader = source.connection()
    copied: dict[str, int] = {}
    with target.connection().transaction() as tx:
        conn = tx.connection
        # TRUNCATE fires no row trigger: the users' profile versions go with it (the COPY below stamps a fresh one
        # on every user it writes), so a running server never keeps a read of the profile that was replaced
        conn.execute(sql.SQL("TRUNCATE {}").format(
            sql.SQL(", ").join(map(sql.Identifier, (*PROFILE_TABLES, "user_versions")))))
        for table, columns in PROFILE_TABLES.items():
            select = f"SELECT {', '.join(columns)} FROM {table} ORDER BY rowid"  # noqa: S608 (names are constants)
            booleans = [i for i, column in enumerate(columns) if (table, column) in BOOLEAN_COLUMNS]
            statement = sql.SQL("COPY {} ({}) FROM STDIN").format(
                sql.Identifier(table), sql.SQL(", ").join(map(sql.Identifier, columns)))
            count = 0
            with conn.cursor().copy(statement) as copy:
                for row in reader.execute(select):
                    if booleans:
                        row = tuple(bool(v) if i in booleans else v for i, v in enumerate(row))
                    copy.write_row(row)
                    count += 1
            copied[table] = count
    log.info("published the profile of %s into PostgreSQL: %s", source.path, copied)
    return copied
