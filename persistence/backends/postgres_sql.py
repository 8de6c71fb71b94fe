"""The PostgreSQL backend's schema migrations and statements (``{schema}`` is filled in once per
store by ``postgres._Queries``). ``postgres.py`` says how a save and a read use them.

``states`` keeps one row per state: its counters and every figure of its latest version but the
payload (created_at, sizes, compression, checksum, tags, ttl, metadata, write_id). The save,
delete and rollback statements keep those in step in the same transaction, so a listing or a
tag search reads ``states`` alone and never visits ``versions``.

Metadata is the caller's JSON kept as ``text``, which reads return: jsonb would read a float
such as 1e16 back as an integer, refuse a NUL character that the other backends keep, and
reorder keys. For SQL that queries metadata, the views ``states_metadata`` (the latest version's)
and ``versions_metadata`` show it as ``jsonb`` (migration 4).
"""

from __future__ import annotations

import re

# A regular expression for a JSON \u0000 escape (not preceded by an odd run of backslashes),
# as an E'' literal: its meaning does not depend on standard_conforming_strings.
_NUL_ESCAPE = r"E'(^|[^\\\\])(\\\\\\\\)*\\\\u0000'"

# Each entry is applied once, in order, and recorded in schema_version.
MIGRATIONS: list[tuple[int, tuple[str, ...]]] = [
    (
        1,
        (
            """CREATE TABLE {schema}.states (
            state_id text COLLATE "C" PRIMARY KEY,
            last_version bigint NOT NULL,          -- highest version ever: never reused
            latest_version bigint NOT NULL,        -- highest version kept
            pruned_below bigint NOT NULL DEFAULT 0,
            version_count integer NOT NULL,
            stored_bytes bigint NOT NULL,
            original_bytes bigint NOT NULL,
            updated_at double precision NOT NULL,  -- whole microseconds, see types.to_micros
            expires_at double precision,
            tags text[] NOT NULL,
            size_bytes integer NOT NULL,
            original_size integer NOT NULL,
            compression text NOT NULL)""",
            "CREATE INDEX states_expires_at ON {schema}.states (expires_at)"
            " WHERE expires_at IS NOT NULL",
            "CREATE INDEX states_updated ON {schema}.states (updated_at, state_id)",
            # Fast update is turned back on, with a small pending list, by migration 3.
            "CREATE INDEX states_tags ON {schema}.states USING gin (tags) WITH (fastupdate = off)",
            """CREATE TABLE {schema}.versions (
            state_id text COLLATE "C" NOT NULL,
            version bigint NOT NULL,
            created_at double precision NOT NULL,
            payload bytea NOT NULL,
            size_bytes integer NOT NULL,
            original_size integer NOT NULL,
            compression text NOT NULL,
            checksum text NOT NULL,
            tags text[] NOT NULL,
            ttl_seconds bigint,
            metadata text NOT NULL,                -- the caller's JSON, kept byte for byte
            write_id text,
            PRIMARY KEY (state_id, version))""",
            "CREATE UNIQUE INDEX versions_write_id ON {schema}.versions (state_id, write_id)"
            " WHERE write_id IS NOT NULL",
            """CREATE TABLE {schema}.checkpoints (
            checkpoint_id text PRIMARY KEY,
            seq bigint GENERATED ALWAYS AS IDENTITY,
            state_id text COLLATE "C" NOT NULL,
            created_at double precision NOT NULL,
            payload bytea NOT NULL,
            checksum text NOT NULL,
            metadata text NOT NULL)""",
            "CREATE INDEX checkpoints_state ON {schema}.checkpoints (state_id, created_at, seq)",
        ),
    ),
    (
        # The rest of the latest version's figures move into states (search reads no versions).
        2,
        (
            "ALTER TABLE {schema}.states ADD COLUMN created_at double precision,"
            " ADD COLUMN checksum text, ADD COLUMN ttl_seconds bigint, ADD COLUMN metadata text,"
            " ADD COLUMN write_id text",
            # Every row is rewritten: one bulk build of the GIN index beats a million inserts.
            "DROP INDEX {schema}.states_tags",
            """UPDATE {schema}.states s SET created_at = v.created_at, checksum = v.checksum,
                ttl_seconds = v.ttl_seconds, metadata = v.metadata, write_id = v.write_id
            FROM {schema}.versions v
            WHERE v.state_id = s.state_id AND v.version = s.latest_version""",
            # A states row without its latest version (the store leaves none) gets placeholders.
            "UPDATE {schema}.states SET created_at = updated_at, checksum = '', metadata = '{{}}'"
            " WHERE created_at IS NULL",
            "ALTER TABLE {schema}.states ALTER COLUMN created_at SET NOT NULL,"
            " ALTER COLUMN checksum SET NOT NULL, ALTER COLUMN metadata SET NOT NULL",
            "CREATE INDEX states_tags ON {schema}.states USING gin (tags) WITH (fastupdate = off)",
            "ANALYZE {schema}.states",
        ),
    ),
    (
        # Every save adds the state's tags to the GIN index anew (a new row version), and
        # inserting each into its posting tree was the costliest part of a save. A pending list
        # takes them cheaply; kept at the smallest size (64 kB), a search scans little of it,
        # and the save that fills it merges it into the trees at once, many entries per page.
        # The ALTER locks the index exclusively for a moment, after any open transaction on it.
        3,
        ("ALTER INDEX {schema}.states_tags SET (fastupdate = on, gin_pending_list_limit = 64)",),
    ),
    (
        # Metadata as jsonb for SQL that queries it (WHERE metadata @> '{"step": 1}'), computed
        # when read: a stored copy cost every save 3% of its time. NULL where the JSON holds a
        # NUL character, which jsonb refuses and a plain cast would fail the whole query on:
        # the escape \u0000 after an even run of backslashes (an odd one escapes a backslash:
        # the text "\\u0000"). A later migration that alters a metadata column must drop
        # these views first.
        4,
        tuple(
            f"CREATE VIEW {{schema}}.{table}_metadata AS SELECT state_id, {version} AS version,"
            f" CASE WHEN metadata !~ {_NUL_ESCAPE} THEN metadata::jsonb END AS metadata"
            f" FROM {{schema}}.{table}"
            for table, version in (("states", "latest_version"), ("versions", "version"))
        ),
    ),
]

SETUP = (
    "CREATE SCHEMA IF NOT EXISTS {schema}",
    "CREATE TABLE IF NOT EXISTS {schema}.schema_version ("
    " version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())",
)
SCHEMA_VERSION = "SELECT coalesce(max(version), 0) FROM {schema}.schema_version"
RECORD_VERSION = "INSERT INTO {schema}.schema_version (version) VALUES (%s)"

LIVE = "(s.expires_at IS NULL OR s.expires_at > %(now)s::float8)"
# VersionRow's fields in order, read from versions v joined to states s.
_ROW = (
    "v.state_id, v.version, v.created_at, {payload}, v.size_bytes, v.original_size,"
    " v.compression, v.checksum, v.tags, v.ttl_seconds, s.expires_at, v.metadata, v.write_id"
)
_FULL_ROW = _ROW.format(payload="v.payload")
_META_ROW = _ROW.format(payload="''::bytea")
# The latest version's VersionRow fields but the frame, from states s alone (see _latest_row).
_LATEST_ROW = (
    "s.state_id, s.latest_version, s.created_at, s.size_bytes, s.original_size, s.compression,"
    " s.checksum, s.tags, s.ttl_seconds, s.expires_at, s.metadata, s.write_id"
)

REVIVE = """
WITH stale AS (
    SELECT 1 FROM {schema}.states
    WHERE state_id = %(sid)s AND expires_at <= %(now)s::float8 FOR UPDATE)
DELETE FROM {schema}.versions WHERE state_id = %(sid)s AND EXISTS (SELECT FROM stale)"""

# These statements run only inside SAVE_FUNCTION, where v_* are its variables.

# A retry of a write_id the live state already holds: the version the first attempt wrote.
DUPLICATE = (
    """
SELECT v.version, v.tags, v.created_at, v.size_bytes, v.original_size, v.compression,
    v.checksum, v.ttl_seconds, s.expires_at, v.metadata
FROM {schema}.versions v JOIN {schema}.states s ON s.state_id = v.state_id
WHERE v.state_id = %(sid)s AND v.write_id = %(write_id)s AND """
    + LIVE
)

# The states row of the new version, with the counters less what PRETRIM dropped (v_gone...,
# 0 and NULL when it did not run). The ON CONFLICT ... WHERE refuses a stale explicit version:
# then no row comes back. An expired state restarts (at 1, or at the explicit version).
UPSERT = """
INSERT INTO {schema}.states AS s (state_id, last_version, latest_version, pruned_below,
    version_count, stored_bytes, original_bytes, updated_at, expires_at, tags, size_bytes,
    original_size, compression, created_at, checksum, ttl_seconds, metadata, write_id)
VALUES (%(sid)s, greatest(%(version)s, 1), greatest(%(version)s, 1), 0, 1, %(size)s, %(orig)s,
    %(updated_at)s, %(expires_at)s, %(tags)s, %(size)s, %(orig)s, %(compression)s,
    %(created_at)s, %(checksum)s, %(ttl)s, %(metadata)s, %(write_id)s)
ON CONFLICT (state_id) DO UPDATE SET
    last_version = CASE WHEN s.expires_at <= %(now)s THEN excluded.last_version
        ELSE greatest(%(version)s, s.last_version + 1) END,
    latest_version = CASE WHEN s.expires_at <= %(now)s THEN excluded.last_version
        ELSE greatest(%(version)s, s.last_version + 1) END,
    pruned_below = CASE WHEN s.expires_at <= %(now)s THEN 0
        WHEN v_gone > 0 THEN coalesce(v_edge, greatest(%(version)s, s.last_version + 1))
        ELSE s.pruned_below END,
    version_count = CASE WHEN s.expires_at <= %(now)s THEN 1
        ELSE s.version_count + 1 - v_gone END,
    stored_bytes = CASE WHEN s.expires_at <= %(now)s THEN 0
        ELSE s.stored_bytes - v_gone_size END + excluded.size_bytes,
    original_bytes = CASE WHEN s.expires_at <= %(now)s THEN 0
        ELSE s.original_bytes - v_gone_orig END + excluded.original_size,
    tags = CASE WHEN %(inherit)s AND NOT coalesce(s.expires_at <= %(now)s, false)
        THEN s.tags ELSE excluded.tags END,
    updated_at = excluded.updated_at, expires_at = excluded.expires_at,
    size_bytes = excluded.size_bytes, original_size = excluded.original_size,
    compression = excluded.compression, created_at = excluded.created_at,
    checksum = excluded.checksum, ttl_seconds = excluded.ttl_seconds,
    metadata = excluded.metadata, write_id = excluded.write_id
WHERE s.expires_at <= %(now)s OR %(version)s = 0 OR s.last_version < %(version)s
RETURNING s.latest_version, s.tags, s.version_count INTO v_version, v_tags, v_count"""

INSERT_VERSION = """
INSERT INTO {schema}.versions (state_id, version, created_at, payload, size_bytes,
    original_size, compression, checksum, tags, ttl_seconds, metadata, write_id)
VALUES (%(sid)s, v_version, %(created_at)s, %(payload)s, %(size)s, %(orig)s, %(compression)s,
    %(checksum)s, v_tags, %(ttl)s, %(metadata)s, %(write_id)s)"""

# A pruning save first locks the states row and reads, in the same statement, what PRETRIM
# needs: v_excess, the versions to drop before adding one to keep p_skip + 1; v_low
# (pruned_below: below it lie only entries of versions pruned earlier, dead until a vacuum);
# and v_edge, the oldest version to keep, found by reading the versions index up from v_low
# rather than down from the newest. v_edge is NULL when every version goes (max_versions=1).
# The subquery reads the versions as they were when the statement began. Should the lock wait
# for a writer of this state, the row comes back as that writer left it (a revive may even
# have renumbered its versions), so the edge is trusted only when the row locked is the one
# the statement began with (same ctid); otherwise v_edge is NULL, and PRETRIM drops nothing
# (or, with max_versions=1, every version it sees then) and TRIM, after UPSERT, prunes the rest
# from the newest.
LOCK = """
SELECT s.expires_at <= %(now)s, s.version_count - %(skip)s, s.pruned_below, s.last_version,
    CASE WHEN s.version_count > %(skip)s
        AND s.ctid = (SELECT ctid FROM {schema}.states WHERE state_id = %(sid)s) THEN (
        SELECT v.version FROM {schema}.versions v
        WHERE v.state_id = %(sid)s AND v.version >= s.pruned_below
        ORDER BY v.version OFFSET s.version_count - %(skip)s LIMIT 1) END
INTO v_expired, v_excess, v_low, v_last, v_edge
FROM {schema}.states s WHERE s.state_id = %(sid)s FOR UPDATE"""

# With the states row locked and before the new version goes in: drop the state's oldest
# v_excess versions, those from v_low up to v_edge. UPSERT then writes the states row once,
# with these figures, and the new version becomes the oldest when v_edge is NULL.
# v_excess comes from the state's version counter, which every write keeps exact; should it
# ever be too high, two bounds keep the newest versions anyway: none of the p_skip highest
# version numbers goes, and without an edge (fewer versions than counted) nothing goes here
# and TRIM, which counts from the newest, prunes after UPSERT.
PRETRIM = """
WITH gone AS (
    DELETE FROM {schema}.versions WHERE state_id = %(sid)s AND version >= v_low
        AND version <= v_last - %(skip)s
        AND version < coalesce(v_edge, CASE WHEN %(skip)s = 0 THEN v_last + 1 END)
    RETURNING size_bytes, original_size
)
SELECT count(*), coalesce(sum(size_bytes), 0), coalesce(sum(original_size), 0)
INTO v_gone, v_gone_size, v_gone_orig FROM gone"""

# The fallback when a save leaves more than it keeps without PRETRIM having pruned (two first
# saves of one state racing, neither having a row to lock; the row deleted and made anew while
# the save waited for its lock; a version counter found too high): a statement of its own,
# after UPSERT.
TRIM = """
WITH edge AS (
    SELECT version FROM {schema}.versions WHERE state_id = %(sid)s
    ORDER BY version DESC OFFSET %(skip)s LIMIT 1
), gone AS (
    DELETE FROM {schema}.versions v USING edge
    WHERE v.state_id = %(sid)s AND v.version < edge.version
    RETURNING v.size_bytes, v.original_size
)
UPDATE {schema}.states s SET version_count = s.version_count - g.n,
    stored_bytes = s.stored_bytes - g.size, original_bytes = s.original_bytes - g.orig,
    pruned_below = (SELECT version FROM edge)
FROM (SELECT count(*) AS n, sum(size_bytes) AS size, sum(original_size) AS orig FROM gone) g
WHERE s.state_id = %(sid)s AND g.n > 0"""

# A save is one call of this function: one statement, one message each way, one implicit
# transaction. Under READ COMMITTED each statement inside takes a fresh snapshot, as REVIVE,
# PRETRIM, UPSERT and TRIM need (see postgres.py), and the function skips the ones that would
# change nothing instead of running them. %(name)s parameters become p_name; the statements above
# are its only copy. The store names the function after a digest of this text and of its schema, and
# creates it when missing, so processes running older code keep calling their own.
SAVE_PARAMS = (
    ("sid", "text"),
    ("version", "bigint"),
    ("now", "float8"),
    ("created_at", "float8"),
    ("updated_at", "float8"),
    ("expires_at", "float8"),
    ("payload", "bytea"),
    ("size", "integer"),
    ("orig", "integer"),
    ("compression", "text"),
    ("checksum", "text"),
    ("tags", "text[]"),
    ("inherit", "boolean"),
    ("ttl", "bigint"),
    ("metadata", "text"),
    ("write_id", "text"),
    ("skip", "bigint"),  # versions kept besides the new one; NULL keeps them all
)
SAVE_FUNCTION = re.sub(
    r"%\((\w+)\)s",
    r"p_\1",
    """
CREATE FUNCTION {schema}.{name}("""
    + ", ".join(f"p_{name} {kind}" for name, kind in SAVE_PARAMS)
    + """)
RETURNS TABLE (version bigint, tags text[], created_at float8, size_bytes integer,
    original_size integer, compression text, checksum text, ttl_seconds bigint,
    expires_at float8, metadata text)
LANGUAGE plpgsql AS {tag}
#variable_conflict use_column
DECLARE
    v_expired boolean;
    v_excess bigint;  -- versions to drop before adding one, to keep p_skip + 1
    v_low bigint;
    v_last bigint;
    v_gone bigint := 0;
    v_gone_size bigint := 0;
    v_gone_orig bigint := 0;
    v_edge bigint;
    v_version bigint;
    v_tags text[];
    v_count integer;
BEGIN
    IF p_skip IS NULL THEN
        SELECT expires_at <= p_now INTO v_expired FROM {schema}.states WHERE state_id = p_sid;
    ELSE  -- locked: until commit no other writer changes this state's versions"""
    + LOCK
    + """;
    END IF;
    IF v_expired THEN"""
    + REVIVE
    + """;
    ELSIF p_write_id IS NOT NULL THEN
        RETURN QUERY"""
    + DUPLICATE
    + """;
        IF FOUND THEN
            RETURN;
        END IF;
    END IF;
    -- Prune first only when the save will write, not when it refuses a stale version.
    IF v_excess > 0 AND v_expired IS NOT TRUE AND (p_version = 0 OR v_last < p_version) THEN"""
    + PRETRIM
    + """;
    END IF;"""
    + UPSERT
    + """;
    IF NOT FOUND THEN  -- refused: the caller reads it as a VersionConflictError
        RAISE EXCEPTION 'version % of state % is taken', p_version, p_sid
            USING ERRCODE = 'not_null_violation', COLUMN = 'version';
    END IF;"""
    + INSERT_VERSION
    + """;
    IF v_count > p_skip + 1 THEN"""
    + TRIM
    + """;
    END IF;
    version := v_version;
    tags := v_tags;
    RETURN NEXT;
END
{tag}""",
)
# The tags go out as one text, joined by U+001F (validation keeps control characters out of
# tags): psycopg adapts a list as an array in Python, some 5 µs a save.
SAVE_CALL = (
    "SELECT * FROM {schema}.{name}("
    + ", ".join(
        "string_to_array(%(tags)s::text, chr(31))" if name == "tags" else f"%({name})s::{kind}"
        for name, kind in SAVE_PARAMS
    )
    + ")"
)
FUNCTION_EXISTS = """
SELECT FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
WHERE n.nspname = %s AND p.proname = %s"""

LAST_VERSIONS = (
    """
SELECT s.state_id, CASE WHEN """
    + LIVE
    + """ THEN s.last_version ELSE 0 END
FROM {schema}.states s WHERE s.state_id = ANY(%(ids)s::text[])"""
)

READ = (
    """
SELECT """
    + _FULL_ROW
    + """, s.pruned_below
FROM {schema}.states s LEFT JOIN {schema}.versions v
    ON v.state_id = s.state_id AND v.version = coalesce(%(version)s::bigint, s.latest_version)
WHERE s.state_id = %(sid)s AND """
    + LIVE
)

READ_MANY = (
    """
SELECT """
    + _FULL_ROW
    + """
FROM {schema}.states s JOIN {schema}.versions v
    ON v.state_id = s.state_id AND v.version = s.latest_version
WHERE s.state_id = ANY(%(ids)s::text[]) AND """
    + LIVE
)

VERSIONS = (
    """
SELECT """
    + _META_ROW
    + """
FROM {schema}.states s JOIN {schema}.versions v ON v.state_id = s.state_id
WHERE s.state_id = %(sid)s AND """
    + LIVE
    + " ORDER BY v.version"
)

LOCK_LIVE = (
    """
SELECT version_count FROM {schema}.states s WHERE s.state_id = %(sid)s AND """
    + LIVE
    + """
FOR UPDATE"""
)
DELETE_ONE = """
DELETE FROM {schema}.versions WHERE state_id = %(sid)s AND version = %(version)s::bigint
RETURNING size_bytes, original_size"""
# The figures of the state's new latest version, in SET_LATEST's parameter order.
NEW_LATEST = """
SELECT version, created_at, tags, size_bytes, original_size, compression, checksum,
    ttl_seconds, metadata, write_id
FROM {schema}.versions WHERE state_id = %(sid)s ORDER BY version DESC LIMIT 1"""
SET_LATEST = """
UPDATE {schema}.states SET version_count = version_count - 1,
    stored_bytes = stored_bytes - %(size)s, original_bytes = original_bytes - %(orig)s,
    latest_version = %(version)s, updated_at = %(updated_at)s, created_at = %(created_at)s,
    tags = %(tags)s::text[], size_bytes = %(new_size)s, original_size = %(new_orig)s,
    compression = %(compression)s, checksum = %(checksum)s, ttl_seconds = %(ttl)s,
    metadata = %(metadata)s, write_id = %(write_id)s::text
WHERE state_id = %(sid)s"""
DELETE_STATE_ROW = "DELETE FROM {schema}.states WHERE state_id = %(sid)s RETURNING expires_at"
DELETE_VERSIONS = "DELETE FROM {schema}.versions WHERE state_id = %(sid)s"
DELETE_CHECKPOINTS = "DELETE FROM {schema}.checkpoints WHERE state_id = %(sid)s"

# Listing: the filters and the keyset condition are composed per call from these pieces.
SUMMARY = (
    """
SELECT state_id, latest_version, version_count, updated_at, size_bytes, original_size,
    compression, tags, expires_at
FROM {schema}.states s WHERE """
    + LIVE
)
PREFIX = " AND state_id >= %(low)s AND state_id LIKE %(pattern)s"
PREFIX_HIGH = " AND state_id < %(high)s"  # the range is what lets the primary key serve it
TAGS = {"all": " AND s.tags @> %(tags)s::text[]", "any": " AND s.tags && %(tags)s::text[]"}
ORDERS = {
    "id": ("state_id", " AND state_id > %(after_id)s"),
    "-id": ("state_id DESC", " AND state_id < %(after_id)s"),
    "updated": (
        "updated_at, state_id",
        " AND (updated_at, state_id) > (%(after_key)s::float8, %(after_id)s)",
    ),
    "-updated": (
        "updated_at DESC, state_id DESC",
        " AND (updated_at, state_id) < (%(after_key)s::float8, %(after_id)s)",
    ),
}
LIST_IDS = "SELECT state_id FROM {schema}.states s WHERE " + LIVE
# A page with a tag filter, fast for common and rare tags alike and whatever the planner thinks:
# walk the first %(budget)s states of the listing in order, keeping the tagged ones; only when
# they hold less than a page, take every tagged state from the GIN index and sort those (few,
# since the tag is rare). {listing} is SUMMARY with the prefix and keyset conditions.
TAG_PAGE = """
WITH walk AS MATERIALIZED (
    SELECT * FROM ({listing} ORDER BY {by} LIMIT %(budget)s) s
    WHERE true{tags} ORDER BY {by} LIMIT %(limit)s
), rest AS MATERIALIZED (
    {listing}{tags} AND (SELECT count(*) FROM walk) < %(limit)s
)
SELECT * FROM (
    SELECT * FROM walk WHERE (SELECT count(*) FROM walk) >= %(limit)s
    UNION ALL (SELECT * FROM rest ORDER BY {by} LIMIT %(limit)s)
) page ORDER BY {by}"""

SEARCH = (
    "SELECT " + _LATEST_ROW + " FROM {schema}.states s WHERE " + LIVE + "{tags}"
    " ORDER BY s.state_id LIMIT %(limit)s"
)

TAG_COUNTS = """
SELECT tag, count(*) FROM {schema}.states, unnest(tags) AS tag
GROUP BY tag ORDER BY count(*) DESC, tag COLLATE "C" LIMIT %(limit)s"""

PUT_CHECKPOINT = """
INSERT INTO {schema}.checkpoints (checkpoint_id, state_id, created_at, payload, checksum, metadata)
VALUES (%s, %s, %s, %s, %s, %s)"""
_CHECKPOINT = (
    "SELECT checkpoint_id, state_id, created_at, payload, checksum, metadata"
    " FROM {schema}.checkpoints"
)
GET_CHECKPOINT = _CHECKPOINT + " WHERE checkpoint_id = %s"
LIST_CHECKPOINTS = _CHECKPOINT + " WHERE state_id = %s ORDER BY created_at, seq"
DELETE_CHECKPOINT = "DELETE FROM {schema}.checkpoints WHERE checkpoint_id = %s"

# Two purgers never wait for each other: each skips the states the other has locked.
PURGE = """
WITH doomed AS (
    SELECT state_id FROM {schema}.states WHERE expires_at <= %(now)s::float8
    ORDER BY expires_at LIMIT %(limit)s FOR UPDATE SKIP LOCKED
), versions_gone AS (
    DELETE FROM {schema}.versions v USING doomed d WHERE v.state_id = d.state_id
), gone AS (
    DELETE FROM {schema}.states s USING doomed d WHERE s.state_id = d.state_id RETURNING 1
)
SELECT count(*) FROM gone"""

PICK_OVERFULL = """
SELECT state_id FROM {schema}.states WHERE version_count > %(keep)s
ORDER BY state_id LIMIT %(limit)s FOR UPDATE SKIP LOCKED"""
PRUNE = """
WITH ranked AS (
    SELECT state_id, version,
        row_number() OVER (PARTITION BY state_id ORDER BY version DESC) AS rank
    FROM {schema}.versions WHERE state_id = ANY(%(ids)s::text[])
), gone AS (
    DELETE FROM {schema}.versions v USING ranked r
    WHERE v.state_id = r.state_id AND v.version = r.version AND r.rank > %(keep)s
    RETURNING v.state_id, v.size_bytes, v.original_size
), totals AS (
    SELECT state_id, count(*) AS n, sum(size_bytes) AS size, sum(original_size) AS orig
    FROM gone GROUP BY state_id
), fixed AS (
    UPDATE {schema}.states s SET version_count = s.version_count - t.n,
        stored_bytes = s.stored_bytes - t.size, original_bytes = s.original_bytes - t.orig,
        pruned_below = (SELECT r.version FROM ranked r
                        WHERE r.state_id = s.state_id AND r.rank = %(keep)s)
    FROM totals t WHERE s.state_id = t.state_id
)
SELECT coalesce(sum(n), 0) FROM totals"""

COUNTS = (
    """
SELECT count(*), coalesce(sum(version_count), 0), coalesce(sum(stored_bytes), 0),
    coalesce(sum(original_bytes), 0), (SELECT count(*) FROM {schema}.checkpoints)
FROM {schema}.states s WHERE """
    + LIVE
)

SERVER_INFO = """
SELECT current_setting('server_version'), pg_database_size(current_database()),
    (SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()),
    (SELECT json_object_agg(t, pg_total_relation_size(format('%%I.%%I', %(schema)s::text, t)))
     FROM unnest(ARRAY['states', 'versions', 'checkpoints']) AS t)"""
