"""One read statement per request: the check every user query passes before it reaches ClickHouse.

The embedded engine (chDB) runs every statement of a request, one after the other, and
keeps what the earlier ones wrote in the session's output when a later one fails: the next
query of that session then answered with both results. So a request is one statement,
decided here by a lexer that follows ClickHouse's own (src/Parsers/Lexer.cpp) for what can
hide a semicolon: quoted strings and identifiers ('...', "...", `...`, with backslash
escapes and doubled quotes), comments (``--``, ``//`` and ``# `` to the end of the line,
nested ``/* */``), heredocs (``$tag$ ... $tag$``) and ``x'..'`` / ``b'..'`` literals. Where
this lexer and ClickHouse's could disagree, it errs towards refusing.

ClickHouse's ``readonly`` setting stays the authority on writes; this check adds what
``readonly = 1`` lets through in the embedded engine: only read statements (SELECT, WITH,
SHOW, DESCRIBE, EXPLAIN, EXISTS), no functions that reach files, URLs, other servers or
the Python process (``file()`` is a scalar function too, readable under ``readonly``), no
``INTO OUTFILE``.

>>> single_statement("SELECT 'a;b' AS s; ")
"SELECT 'a;b' AS s"
>>> single_statement("SELECT 1; SELECT 2")
Traceback (most recent call last):
...
sinks.sql_guard.RefusedQuery: refused: one statement per request, and this one has a second statement after the ';' at character 9
"""

from __future__ import annotations

from dataclasses import dataclass

WHITESPACE = frozenset(" \t\n\r\f\v")
READ_STATEMENTS = ("SELECT", "WITH", "SHOW", "DESCRIBE", "DESC", "EXPLAIN", "EXISTS")
# Functions (table or scalar) that read or write outside the store: files, URLs, other
# servers, programs, the host Python process. Compared case-insensitively.
OUTSIDE_FUNCTIONS = frozenset(name.lower() for name in (
    "file", "fileCluster", "url", "urlCluster", "s3", "s3Cluster", "gcs", "oss", "cosn", "hdfs", "hdfsCluster",
    "azureBlobStorage", "azureBlobStorageCluster", "remote", "remoteSecure", "cluster", "clusterAllReplicas",
    "executable", "executablePool", "mysql", "postgresql", "sqlite", "mongodb", "redis", "jdbc", "odbc",
    "python", "arrowStream", "input", "catboostEvaluate", "dictionary", "loop",
))
OUTSIDE_PREFIXES = ("iceberg", "deltalake", "hudi", "paimon", "delta_lake", "ytsaurus")
REFUSED_WORDS = frozenset({"outfile", "infile"})


class RefusedQuery(ValueError):
    """The query was not sent to ClickHouse; the message says why, in one line."""


@dataclass(frozen=True)
class Token:
    kind: str  # word | quoted | string | heredoc | semicolon | open | other
    text: str
    start: int


def _word_char(ch: str) -> bool:
    return ch.isascii() and (ch.isalnum() or ch == "_")


def _quoted_end(sql: str, pos: int) -> int:
    """End (exclusive) of the quoted token starting at ``pos``, as ClickHouse's quotedString."""
    quote = sql[pos]
    i = pos + 1
    n = len(sql)
    while i < n:
        ch = sql[i]
        if ch == "\\":
            i += 2
            continue
        if ch == quote:
            if i + 1 < n and sql[i + 1] == quote:
                i += 2
                continue
            return i + 1
        i += 1
    kind = {"'": "string literal", '"': "quoted identifier", "`": "quoted identifier"}[quote]
    raise RefusedQuery(f"refused: the {kind} that starts at character {pos + 1} is not closed")


def tokens(sql: str) -> list[Token]:
    """The significant tokens of ``sql`` (whitespace and comments dropped).

    >>> [t.text for t in tokens("SELECT `a;b`, 'c;' -- x; y\\n/* /* ; */ */ ;")]
    ['SELECT', '`a;b`', ',', "'c;'", ';']
    >>> [t.kind for t in tokens("SELECT $q$ ; $q$, x'41', 1")]
    ['word', 'heredoc', 'other', 'string', 'other', 'word']
    """
    out: list[Token] = []
    i, n = 0, len(sql)
    while i < n:
        ch = sql[i]
        start = i
        if ch in WHITESPACE:
            i += 1
            continue
        if ch in "'\"`":
            i = _quoted_end(sql, i)
            out.append(Token("string" if ch == "'" else "quoted", sql[start:i], start))
            continue
        two = sql[i:i + 2]
        if two in ("--", "//") or (ch == "#" and i + 1 < n and sql[i + 1] in " !"):
            newline = sql.find("\n", i)
            i = n if newline < 0 else newline
            continue
        if two == "/*":
            depth, i = 1, i + 2
            while depth:
                if i + 2 > n:
                    raise RefusedQuery(f"refused: the comment that starts at character {start + 1} is not closed")
                if sql.startswith("/*", i):
                    depth, i = depth + 1, i + 2
                elif sql.startswith("*/", i):
                    depth, i = depth - 1, i + 2
                else:
                    i += 1
            continue
        if ch == ";":
            out.append(Token("semicolon", ch, start))
            i += 1
            continue
        if ch == "(":
            out.append(Token("open", ch, start))
            i += 1
            continue
        if ch == "$":
            name_end = sql.find("$", i + 1)
            if name_end >= 0:
                tag = sql[i:name_end + 1]
                close = sql.find(tag, name_end + 1)
                if close >= 0:
                    i = close + len(tag)
                    out.append(Token("heredoc", sql[start:i], start))
                    continue
            if i + 1 == n or not _word_char(sql[i + 1]):
                out.append(Token("other", ch, start))
                i += 1
                continue
        if ch in "xXbB" and i + 1 < n and sql[i + 1] == "'":
            digits = "0123456789abcdefABCDEF" if ch in "xX" else "01"
            i += 2
            while i < n and sql[i] in digits:
                i += 1
            if i >= n or sql[i] != "'":
                raise RefusedQuery(f"refused: the {ch}'...' literal at character {start + 1} is not closed "
                                   "or holds other characters than its digits")
            i += 1
            out.append(Token("string", sql[start:i], start))
            continue
        if _word_char(ch) or ch == "$":
            i += 1
            # A word runs on over word characters and '$' (ClickHouse's BareWord); a number
            # followed by letters is one word too. Either way, nothing here can hide a ';'.
            while i < n and (_word_char(sql[i]) or sql[i] == "$" or (sql[i] == "." and sql[start].isdigit())):
                i += 1
            out.append(Token("word", sql[start:i], start))
            continue
        out.append(Token("other", ch, start))
        i += 1
    return out


def _identifier(token: Token) -> str | None:
    if token.kind == "word":
        return token.text
    if token.kind == "quoted":
        quote = token.text[0]
        return token.text[1:-1].replace(quote * 2, quote).replace("\\" + quote, quote)
    return None


def single_statement(sql: str) -> str:
    """The one read statement of ``sql``, without its trailing ``;``, or :class:`RefusedQuery`.

    >>> single_statement("SELECT 1 -- ; DROP TABLE x\\n;")
    'SELECT 1 -- ; DROP TABLE x'
    >>> single_statement("SELECT file('/etc/hostname')")
    Traceback (most recent call last):
    ...
    sinks.sql_guard.RefusedQuery: refused: file() reaches outside the monitor's store (character 8)
    >>> single_statement("DROP TABLE monitoring.alerts")
    Traceback (most recent call last):
    ...
    sinks.sql_guard.RefusedQuery: refused: the query path is readonly and takes one read statement (SELECT, WITH, SHOW, DESCRIBE, DESC, EXPLAIN, EXISTS), not DROP
    """
    found = tokens(sql)
    if not found:
        raise RefusedQuery("refused: empty query")
    end = len(sql)
    for k, token in enumerate(found):
        if token.kind != "semicolon":
            continue
        if k == 0:
            raise RefusedQuery("refused: the query starts with ';' (an empty statement)")
        rest = found[k + 1:]
        if any(t.kind != "semicolon" for t in rest):
            raise RefusedQuery(f"refused: one statement per request, and this one has a second statement after "
                               f"the ';' at character {token.start + 1}")
        end = token.start
        found = found[:k]
        break
    first = found[0]
    keyword = first.text.upper() if first.kind == "word" else first.text
    if first.kind != "open" and keyword not in READ_STATEMENTS:
        raise RefusedQuery(f"refused: the query path is readonly and takes one read statement "
                           f"({', '.join(READ_STATEMENTS)}), not {keyword[:40]}")
    for k, token in enumerate(found):
        name = _identifier(token)
        if name is None:
            continue
        lowered = name.lower()
        if token.kind == "word" and lowered in REFUSED_WORDS:
            raise RefusedQuery(f"refused: INTO OUTFILE / FROM INFILE touch the machine's files "
                               f"(character {token.start + 1})")
        called = k + 1 < len(found) and found[k + 1].kind == "open"
        if called and (lowered in OUTSIDE_FUNCTIONS or lowered.startswith(OUTSIDE_PREFIXES)):
            raise RefusedQuery(f"refused: {name}() reaches outside the monitor's store (character {token.start + 1})")
    return sql[:end].strip()
