"""The one-read-statement check of users' queries (sinks/sql_guard.py), without an engine.

The same check against ClickHouse's own parser: tests/integration/test_query_guard.py.
"""

from __future__ import annotations

import pytest

from sinks.sql_guard import RefusedQuery, single_statement

ACCEPTED = {
    "SELECT 1": "SELECT 1",
    "SELECT 1;": "SELECT 1",
    "  SELECT 1 ;  \n": "SELECT 1",
    "SELECT 1;;": "SELECT 1",
    "SELECT 1; -- a comment after the statement": "SELECT 1",
    "SELECT 1; /* a comment */": "SELECT 1",
    "select 'a;b' AS s": "select 'a;b' AS s",
    "SELECT 'it''s; fine' AS s": "SELECT 'it''s; fine' AS s",
    "SELECT 'esc\\'; still inside' AS s": "SELECT 'esc\\'; still inside' AS s",
    'SELECT 1 AS "a;b"': 'SELECT 1 AS "a;b"',
    "SELECT 1 AS `a;b`": "SELECT 1 AS `a;b`",
    "SELECT 1 AS `a``;b`": "SELECT 1 AS `a``;b`",
    "SELECT 1 -- ; DROP TABLE x": "SELECT 1 -- ; DROP TABLE x",
    "SELECT 1 // ; DROP TABLE x": "SELECT 1 // ; DROP TABLE x",
    "SELECT 1 # ; DROP TABLE x": "SELECT 1 # ; DROP TABLE x",
    "SELECT 1 /* ; /* nested ; */ still ; */": "SELECT 1 /* ; /* nested ; */ still ; */",
    "SELECT $$a;b$$ AS h": "SELECT $$a;b$$ AS h",
    "SELECT $tag$a;b$tag$ AS h;": "SELECT $tag$a;b$tag$ AS h",
    "SELECT x'3B' AS semicolon": "SELECT x'3B' AS semicolon",
    "WITH 1 AS a SELECT a": "WITH 1 AS a SELECT a",
    "(SELECT 1)": "(SELECT 1)",
    "SHOW TABLES FROM monitoring": "SHOW TABLES FROM monitoring",
    "DESCRIBE TABLE monitoring.outcomes": "DESCRIBE TABLE monitoring.outcomes",
    "EXPLAIN SELECT 1": "EXPLAIN SELECT 1",
    "EXISTS TABLE monitoring.alerts": "EXISTS TABLE monitoring.alerts",
    "SELECT url_path, filename FROM t": "SELECT url_path, filename FROM t",
    "SELECT domain(url) FROM t": "SELECT domain(url) FROM t",  # a column named url, not url()
}

REFUSED = {
    "": "empty query",
    "   -- only a comment": "empty query",
    ";": "empty statement",
    "; SELECT 1": "empty statement",
    "SELECT 1; SELECT 2": "second statement",
    "SELECT 1; DROP TABLE monitoring.alerts": "second statement",
    "SELECT 1;;SELECT 2": "second statement",
    "SELECT 'a;b'; SELECT 2": "second statement",
    "SELECT 1 /* ; */ ; SELECT 2": "second statement",
    "SELECT 1 -- ;\n; SELECT 2": "second statement",
    "SELECT 1 #x ; SELECT 2": "second statement",  # '#x' is no comment for ClickHouse
    "SELECT $a ; SELECT 2 $a": "second statement",  # no heredoc: '$a ; SELECT 2 $' never closes
    "SELECT 1$a$;$a$": "second statement",  # ClickHouse may read a heredoc after the number: refuse
    "SELECT 'unclosed; SELECT 2": "not closed",
    'SELECT "unclosed; SELECT 2': "not closed",
    "SELECT 1 /* unclosed; SELECT 2": "not closed",
    "SELECT 'a\\": "not closed",
    "SELECT x'4;1'": "not closed",
    "DROP TABLE monitoring.alerts": "not DROP",
    "INSERT INTO monitoring.alerts (alert_id) VALUES ('x')": "not INSERT",
    "SET readonly = 0": "not SET",
    "USE system": "not USE",
    "KILL QUERY WHERE 1": "not KILL",
    "SYSTEM SHUTDOWN": "not SYSTEM",
    "ALTER TABLE monitoring.outcomes DELETE WHERE 1": "not ALTER",
    "OPTIMIZE TABLE monitoring.outcomes": "not OPTIMIZE",
    "/* c */ TRUNCATE TABLE monitoring.outcomes": "not TRUNCATE",
    "SELECT file('/etc/hostname')": "file()",
    "SELECT * FROM file('/etc/passwd', 'LineAsString')": "file()",
    "SELECT * FROM FILE ('/etc/passwd')": "FILE()",
    "SELECT * FROM `file`('/etc/passwd')": "file()",
    'SELECT * FROM "url"(\'http://x/\', CSV)': "url()",
    "SELECT * FROM url /* c */ ('http://x/', CSV)": "url()",
    "SELECT * FROM s3('http://x/b/k.csv')": "s3()",
    "SELECT * FROM remote('127.0.0.1', system.one)": "remote()",
    "SELECT * FROM executable('ls', TSV, 'x String')": "executable()",
    "SELECT * FROM python(df)": "python()",
    "SELECT * FROM icebergS3('http://x/')": "icebergS3()",
    "DESCRIBE TABLE file('/etc/passwd')": "file()",
    "SELECT 1 INTO OUTFILE '/tmp/x'": "OUTFILE",
}


@pytest.mark.parametrize("sql", ACCEPTED)
def test_one_read_statement_is_accepted_without_its_trailing_semicolon(sql):
    assert single_statement(sql) == ACCEPTED[sql]


@pytest.mark.parametrize("sql", REFUSED)
def test_refused_with_a_clear_reason(sql):
    with pytest.raises(RefusedQuery) as refused:
        single_statement(sql)
    message = str(refused.value)
    assert message.startswith("refused: ") and REFUSED[sql] in message and "\n" not in message


def test_a_write_is_refused_naming_readonly():
    # `python -m sinks.query` users (and tests) read "readonly" in the refusal of a write.
    with pytest.raises(RefusedQuery, match="readonly"):
        single_statement("DROP TABLE monitoring.outcomes")
