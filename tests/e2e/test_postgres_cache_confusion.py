"""A literal `?` poisons the SQL classification cache (found by the
sql_classify fuzz target, fuzz/artifacts-found/sql_classify/question-mark-key-*).

`cache::normalize` replaces literals by `?` to build the cache key, but
leaves a `?` already in the text as it is. sqlparser reads
`select text ? into evil` as a plain SELECT (`text ? into`, the jsonb `?`
operator, aliased `evil`: no table written), while
`select text 'pwned' into evil` is SELECT INTO (a typed literal, then
CREATE TABLE evil). Both have the key `select text ? into evil`, and the
engine's cache is shared by every connection of the worker: once the
first text is classified, the second is decided as a plain SELECT, and an
analyst, who may only SELECT orders and customers, creates a table.

Expected: the second statement is refused with 42501 and no table appears.
Found by the sql_classify fuzz target; now a regression test."""

from __future__ import annotations

import pytest

import pg


def test_a_literal_question_mark_does_not_poison_the_cache(pg_stack, pg_fresh, pg_tokens) -> None:
    cluster = pg_fresh
    cluster.admin("DROP TABLE IF EXISTS public.evil")
    with pg.connect("psycopg", pg_stack.port, "alice", pg_tokens.analyst()) as s:
        # Classified as a plain SELECT and cached; PostgreSQL rejects the syntax.
        with pytest.raises(pg.DbError):
            s.run("select text ? into evil")
        # Same cache key: must be classified on its own (SELECT INTO = CREATE TABLE) and refused.
        try:
            s.run("select text 'pwned' into evil")
        except pg.DbError as e:
            assert e.sqlstate == pg.INSUFFICIENT_PRIVILEGE, e
    assert not cluster.table_exists("public.evil"), "an analyst created table evil through SELECT INTO"
