r"""Serve one embedded ClickHouse store (chDB) over ClickHouse's HTTP interface, to many processes.

chDB opens a store in one process only, so two workers sharing partitions, a scaling
benchmark's writers or a test of a ClickHouse outage cannot share it directly, and no real
ClickHouse server runs on these machines. This front owns the store and speaks the part of
ClickHouse's HTTP interface that clickhouse-connect's HttpClient uses: its handshake,
queries in any output format (Native by default), commands, Native and text inserts
(compressed bodies included), sessions, settings, bind parameters, query ids, and errors as
``Code: N. DB::Exception: ...`` with ``X-ClickHouse-Exception-Code``. The unchanged client,
and so the monitor with ``CLICKHOUSE_URL=http://host:port``, writes to one real ClickHouse
engine; stopping the process is a real outage (connection refused) and starting it again on
the same directory serves the same rows.

It is a test and small-setup tool, not a replacement for clickhouse-server: no users or TLS
(any credentials are accepted: bind it to loopback), one engine call at a time, responses
buffered and uncompressed, HTTP 500 for every ClickHouse error, and a session's ``SET`` state
kept per combination of URL settings (each combination gets its own engine handle).

    python -m sinks.http_front --path DIR [--host 127.0.0.1] --port N      (N = 0: any free port)

>>> split_insert(b"INSERT INTO t (`a`, `FORMAT`) FORMAT Native\n\x00\x01")
(b'INSERT INTO t (`a`, `FORMAT`)', 'Native', b'\x00\x01')
>>> split_insert(b"insert into t format JSONEachRow {} ") == (b'insert into t', 'JSONEachRow', b'{} ')
True
>>> split_insert(b"INSERT INTO t VALUES (1, 'FORMAT x')") is None
True
"""

from __future__ import annotations

import argparse
import collections
import email.parser
import email.policy
import gzip
import json
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
import zlib
from collections import OrderedDict
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

# URL parameters that steer the HTTP layer; every other one (but param_*) is a setting.
TRANSPORT_PARAMS = frozenset({
    "query", "database", "default_format", "session_id", "session_timeout", "session_check",
    "query_id", "quota_key", "compress", "decompress", "buffer_size", "wait_end_of_query",
    "client_protocol_version", "role", "user", "password", "stacktrace",
})
# Settings of ClickHouse's HTTP layer, meaningless for a buffered, uncompressed front.
HTTP_ONLY_SETTINGS = frozenset({
    "send_progress_in_http_headers", "http_headers_progress_interval_ms", "enable_http_compression",
    "cancel_http_readonly_queries_on_client_close", "http_zlib_compression_level",
    "http_wait_end_of_query", "http_response_buffer_size",
})
# First words of statements that answer with a result set (even an empty one).
RESULT_STATEMENTS = frozenset({"SELECT", "WITH", "SHOW", "DESC", "DESCRIBE", "EXISTS", "EXPLAIN", "CHECK",
                               "("})
# chDB's Python wrapper turns these "formats" into Python objects; ClickHouse knows none of them.
CHDB_PYTHON_FORMATS = frozenset({"dataframe", "datastore", "arrowtable", "debug"})
DEFAULT_SESSION_TIMEOUT = 60.0
MAX_SESSION_TIMEOUT = 3600.0
MAX_HANDLES = 256
STOP_GRACE_S = 5.0  # on SIGTERM, how long requests under way may take to finish
_NAMES = {48: "NOT_IMPLEMENTED", 62: "SYNTAX_ERROR", 73: "UNKNOWN_FORMAT", 115: "UNKNOWN_SETTING",
          236: "ABORTED", 271: "CANNOT_DECOMPRESS", 372: "SESSION_NOT_FOUND", 1001: "STD_EXCEPTION"}
_CODE_RE = re.compile(r"Code: (\d+)\.")
_VERSION_RE = re.compile(r"\(version [\w.-]+\)\s*\Z")
_IDENTIFIER_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_FIRST_WORD_RE = re.compile(rb"\s*(?:(?:--[^\n]*\n|/\*.*?\*/)\s*)*([A-Za-z]+|\()", re.S)
_TRAILING_FORMAT_RE = re.compile(rb"\bFORMAT\s+(\w+)\s*;?\s*\Z", re.I)
_WORD_RE = re.compile(rb"[A-Za-z_][A-Za-z0-9_]*")
_FORMAT_NAME_RE = re.compile(rb"\s+(\w+)")


class ClickHouseError(Exception):
    """An error as ClickHouse reports it: a numeric code and ``Code: N. DB::Exception: ...``."""

    def __init__(self, code: int, text: str) -> None:
        message = text if text.startswith("Code: ") else (
            f"Code: {code}. DB::Exception: {text}. ({_NAMES.get(code, 'UNKNOWN_EXCEPTION')})")
        super().__init__(message)
        self.code = code
        self.message = message

    @classmethod
    def from_engine(cls, err: Exception) -> ClickHouseError:
        """chDB's message, minus wrappers such as 'Streaming insert finish failed: '."""
        text = str(err)
        start = text.find("Code: ")
        match = _CODE_RE.match(text, start) if start >= 0 else None
        if match is None:
            return cls(1001, text.strip() or type(err).__name__)
        return cls(int(match.group(1)), text[start:].strip())


def first_word(sql: bytes) -> str:
    """The statement's keyword (comments skipped), upper case: what kind of request this is."""
    match = _FIRST_WORD_RE.match(sql)
    return match.group(1).decode().upper() if match else ""


def split_insert(sql: bytes) -> tuple[bytes, str, bytes] | None:
    """``INSERT ... FORMAT F <data>`` as (statement without FORMAT, F, data), else None.

    Quotes and comments are skipped, so `FORMAT` inside a name or string does not count. The
    data starts after the format name, its blanks and one line break, as in ClickHouse;
    ``VALUES`` and ``SELECT`` inserts carry no separate data and go to the engine whole.
    """
    pos, end = 0, len(sql)
    while pos < end:
        char = sql[pos:pos + 1]
        if char in (b"'", b'"', b"`"):
            pos += 1
            while pos < end and sql[pos:pos + 1] != char:
                pos += 2 if sql[pos:pos + 1] == b"\\" else 1
            pos += 1
        elif sql.startswith(b"--", pos):
            newline = sql.find(b"\n", pos)
            pos = end if newline < 0 else newline + 1
        elif sql.startswith(b"/*", pos):
            close = sql.find(b"*/", pos + 2)
            pos = end if close < 0 else close + 2
        elif (word := _WORD_RE.match(sql, pos)) is not None:
            keyword = word.group().upper()
            if keyword in (b"VALUES", b"SELECT", b"WITH"):
                return None
            if keyword == b"FORMAT" and (name := _FORMAT_NAME_RE.match(sql, word.end())):
                data = name.end()
                while data < end and sql[data:data + 1] in b" \t\f":
                    data += 1
                data += sql.startswith(b"\r", data)
                data += sql.startswith(b"\n", data)
                return sql[:pos].rstrip(), name.group(1).decode(), sql[data:]
            pos = word.end()
        else:
            pos += 1
    return None


def decompress(body: bytes, encoding: str | None) -> bytes:
    """A request body as sent with ``Content-Encoding`` (clickhouse-connect compresses inserts)."""
    encoding = (encoding or "").strip().lower()
    if not body or encoding in ("", "identity"):
        return body
    try:
        if encoding == "lz4":  # one LZ4 frame per insert block, concatenated
            import lz4.frame

            parts = []
            while body:
                decompressor = lz4.frame.LZ4FrameDecompressor()
                parts.append(decompressor.decompress(body))
                body = decompressor.unused_data
            return b"".join(parts)
        if encoding == "zstd":
            if sys.version_info >= (3, 14):
                from compression import zstd
            else:
                from backports import zstd
            return zstd.decompress(body)
        if encoding == "gzip":
            return gzip.decompress(body)
        if encoding == "deflate":
            return zlib.decompress(body)
        if encoding == "br":
            import brotli

            return brotli.decompress(body)
    except Exception as err:  # noqa: BLE001 - any codec failure is the client's bad body
        raise ClickHouseError(271, f"Cannot decompress the {encoding} request body: {err}") from err
    raise ClickHouseError(48, f"Unsupported HTTP Content-Encoding: {encoding}")


def _quote(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


@dataclass
class Statement:
    """One request as the engine sees it: SQL (with any inline data) and its context."""

    sql: bytes
    settings: dict[str, str] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)  # bind parameters, without `param_`
    database: str | None = None
    default_format: str = "TabSeparated"
    session_id: str | None = None
    session_timeout: float = DEFAULT_SESSION_TIMEOUT
    session_check: bool = False


@dataclass
class Reply:
    """What a statement answered: its bytes, its output format when it has a result set, stats."""

    body: bytes
    fmt: str | None
    summary: dict[str, str]


@dataclass
class _Handle:
    conn: Any
    timeout: float  # idle seconds before a session handle is closed; 0 = kept
    used: float
    database: str = "default"  # the handle's current database
    session_database: str = "default"  # the one a USE chose: requests without ?database= get it


class Engine:
    """The process's one chDB engine. Every call holds one lock: chDB is not thread-safe."""

    def __init__(self, path: str | Path, *, max_handles: int = MAX_HANDLES) -> None:
        import chdb  # here, not at import: launching a front (tests, benchmarks) needs no engine

        self._connect = chdb.connect
        Path(path).mkdir(parents=True, exist_ok=True)
        self.path = str(Path(path).resolve())  # chDB compares paths literally
        self.lock = threading.Lock()
        self.max_handles = max_handles
        self.closed = False
        base = self._connect(self.path)
        row = base.query("SELECT version(), timezone()", "TabSeparated").bytes()
        self.version, self.timezone = row.decode().strip().split("\t")
        self._handles: OrderedDict[tuple[str | None, tuple[tuple[str, str], ...]], _Handle] = OrderedDict()
        self._handles[(None, ())] = _Handle(base, 0.0, time.monotonic())

    def execute(self, st: Statement) -> Reply:
        """Run one statement in its session (or the shared sessionless handle) and settings."""
        word = first_word(st.sql)
        with self.lock:
            if self.closed:
                raise ClickHouseError(236, "The server is shutting down")
            now = time.monotonic()
            self._expire(now)
            # Without a session a SET or USE must not outlive its request.
            throwaway = st.session_id is None and word in ("SET", "USE")
            handle = _Handle(self._open(st.settings), 0.0, now) if throwaway else self._handle(st, now)
            try:
                database = st.database or handle.session_database
                if database != handle.database:
                    self._query(handle, f"USE `{database.replace('`', '``')}`".encode(), "TabSeparated")
                    handle.database = database
                reply = self._run(handle, st, word)
                if word == "USE":
                    current = self._query(handle, b"SELECT currentDatabase()", "TabSeparated").bytes()
                    handle.database = handle.session_database = current.decode().strip()
                return reply
            finally:
                if throwaway:
                    handle.conn.close()

    def _run(self, handle: _Handle, st: Statement, word: str) -> Reply:
        parts = split_insert(st.sql) if word == "INSERT" else None
        if parts is not None:
            head, fmt, data = parts
            try:
                with handle.conn.send_insert(head.decode(), fmt) as inserter:
                    if data:
                        inserter.append(data)
                    done = inserter.finish()
            except Exception as err:  # noqa: BLE001 - chDB raises RuntimeError with ClickHouse's text
                raise ClickHouseError.from_engine(err) from err
            return Reply(b"", None, _summary(0, 0, done.rows_written, done.bytes_written, done.elapsed))
        if st.default_format.lower() in CHDB_PYTHON_FORMATS or not _IDENTIFIER_RE.match(st.default_format):
            raise ClickHouseError(73, f"Unknown format {st.default_format}")
        result = self._query(handle, st.sql, st.default_format, st.params)
        body = result.bytes() or b""
        trailing = _TRAILING_FORMAT_RE.search(st.sql)
        fmt = trailing.group(1).decode() if trailing else st.default_format
        summary = _summary(result.rows_read(), result.bytes_read(), result.rows_written(),
                           result.bytes_written(), result.elapsed())
        return Reply(body, fmt if body or word in RESULT_STATEMENTS else None, summary)

    @staticmethod
    def _query(handle: _Handle, sql: bytes, fmt: str, params: dict[str, str] | None = None) -> Any:
        try:
            return handle.conn.query(sql, fmt, params=params or {})
        except Exception as err:  # noqa: BLE001 - ChdbError carries ClickHouse's text
            raise ClickHouseError.from_engine(err) from err

    def _handle(self, st: Statement, now: float) -> _Handle:
        key = (st.session_id, tuple(sorted(st.settings.items())))
        handle = self._handles.get(key)
        if handle is None:
            if st.session_check and not any(k[0] == st.session_id for k in self._handles):
                raise ClickHouseError(372, f"Session {st.session_id} not found")
            while len(self._handles) >= self.max_handles:
                self._close(next(k for k in self._handles if k != (None, ())))
            handle = self._handles[key] = _Handle(self._open(st.settings), 0.0, now)
        self._handles.move_to_end(key)
        handle.used = now
        if st.session_id is not None:
            handle.timeout = st.session_timeout
        return handle

    def _open(self, settings: dict[str, str]) -> Any:
        """A new engine handle with the settings applied (readonly last, as ClickHouse checks it)."""
        conn = self._connect(self.path)
        try:
            for name, value in sorted(settings.items(), key=lambda item: (item[0] == "readonly", item[0])):
                if not _IDENTIFIER_RE.match(name):
                    raise ClickHouseError(115, f"Unknown setting '{name}'")
                try:
                    conn.query(f"SET {name} = {_quote(value)}", "TabSeparated")
                except Exception as err:  # noqa: BLE001
                    raise ClickHouseError.from_engine(err) from err
        except BaseException:
            conn.close()
            raise
        return conn

    def _expire(self, now: float) -> None:
        for key in [k for k, h in self._handles.items() if h.timeout and now - h.used > h.timeout]:
            self._close(key)

    def _close(self, key: tuple[str | None, tuple[tuple[str, str], ...]]) -> None:
        handle = self._handles.pop(key)
        try:
            handle.conn.close()
        except Exception:  # noqa: BLE001 - closing is best effort
            pass

    def close(self) -> None:
        """Close every handle, the base one last, once no call is running."""
        with self.lock:
            self.closed = True
            for key in [k for k in self._handles if k != (None, ())] + [(None, ())]:
                self._close(key)


def _summary(read_rows: int, read_bytes: int, written_rows: int, written_bytes: int,
             elapsed: float) -> dict[str, str]:
    """The ``X-ClickHouse-Summary`` fields clickhouse-connect reads (strings, as ClickHouse sends)."""
    return {"read_rows": str(read_rows), "read_bytes": str(read_bytes), "written_rows": str(written_rows),
            "written_bytes": str(written_bytes), "total_rows_to_read": "0", "result_rows": "0",
            "result_bytes": "0", "elapsed_ns": str(int(elapsed * 1e9))}


def _form_fields(content_type: str, body: bytes) -> dict[str, str]:
    """The text fields of a multipart form (clickhouse-connect's form-encoded queries)."""
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + body)
    fields: dict[str, str] = {}
    for part in message.iter_parts():
        if part.get_filename() is not None:
            raise ClickHouseError(48, "External tables are not supported by this front")
        name = part.get_param("name", header="content-disposition")
        fields[str(name)] = (part.get_payload(decode=True) or b"").decode()
    return fields


def build_statement(method: str, params: dict[str, str], headers: Any, body: bytes) -> Statement:
    """Read a request the way ClickHouse does: URL (or form) query, then the body, then params."""
    body = decompress(body, headers.get("Content-Encoding"))
    content_type = headers.get("Content-Type") or ""
    if content_type.startswith("multipart/form-data"):
        params = {**params, **_form_fields(content_type, body)}
        body = b""
    for unsupported in ("compress", "decompress"):
        if params.get(unsupported, "0") not in ("0", ""):
            raise ClickHouseError(48, f"'{unsupported}=1' (ClickHouse's native compression) is not supported")
    query = params.get("query", "")
    sql = (query.encode() + b"\n" if query else b"") + body
    if not sql.strip():
        raise ClickHouseError(62, "Empty query")
    settings = {k: v for k, v in params.items()
                if k not in TRANSPORT_PARAMS and k not in HTTP_ONLY_SETTINGS and not k.startswith("param_")}
    if method == "GET":
        settings.setdefault("readonly", "2")  # as ClickHouse: GET requests cannot write
    try:
        timeout = min(float(params.get("session_timeout") or DEFAULT_SESSION_TIMEOUT), MAX_SESSION_TIMEOUT)
    except ValueError as err:
        raise ClickHouseError(115, f"Invalid session timeout: {params['session_timeout']}") from err
    return Statement(
        sql=sql,
        settings=settings,
        params={k[len("param_"):]: v for k, v in params.items() if k.startswith("param_")},
        database=params.get("database") or None,
        default_format=params.get("default_format") or "TabSeparated",
        session_id=params.get("session_id") or None,
        session_timeout=max(timeout, 0.0),
        session_check=params.get("session_check") == "1",
    )


_CONTENT_TYPES = {"native": "application/octet-stream", "rowbinary": "application/octet-stream",
                  "parquet": "application/octet-stream", "arrow": "application/octet-stream",
                  "tabseparated": "text/tab-separated-values; charset=UTF-8",
                  "tsv": "text/tab-separated-values; charset=UTF-8", "csv": "text/csv; charset=UTF-8"}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: clickhouse-connect pools its connections
    server_version = "ClickHouseHTTPFront"
    timeout = 600  # an idle keep-alive connection's thread ends after this long
    server: _Server

    def setup(self) -> None:
        super().setup()
        # Headers and body leave in two writes: without this, Nagle and the client's delayed
        # ACK add ~40 ms to every small answer.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self._serve("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._serve("POST")

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet; errors go to clients
        return

    def _serve(self, method: str) -> None:
        if not self.server.begin_request():
            # Stopping: like a server going down, answer nothing more on kept-alive connections
            self.close_connection = True
            self._send(503, b"Code: 236. DB::Exception: The server is shutting down. (ABORTED)\n",
                       {"Content-Type": "text/plain; charset=UTF-8", "X-ClickHouse-Exception-Code": "236"})
            return
        try:
            self._serve_request(method)
        finally:
            self.server.end_request()

    def _serve_request(self, method: str) -> None:
        url = urlsplit(self.path)
        params = dict(parse_qsl(url.query, keep_blank_values=True))
        try:
            body = self._read_body()
        except ValueError:
            self.close_connection = True
            self._send(400, b"Malformed chunked request body\n", {"Content-Type": "text/plain"})
            return
        if url.path == "/ping" or (url.path == "/" and method == "GET" and "query" not in params):
            self._send(200, b"Ok.\n", {"Content-Type": "text/html; charset=UTF-8"})
            return
        if url.path != "/":
            self._send(404, f"There is no handle {url.path}\n".encode(), {"Content-Type": "text/plain"})
            return
        engine = self.server.engine
        query_id = params.get("query_id") or str(uuid.uuid4())
        headers = {"X-ClickHouse-Query-Id": query_id, "X-ClickHouse-Server-Display-Name": "http-front"}
        try:
            reply = engine.execute(build_statement(method, params, self.headers, body))
        except Exception as err:  # noqa: BLE001 - every failure is answered as ClickHouse would
            error = err if isinstance(err, ClickHouseError) else ClickHouseError(
                1001, f"{type(err).__name__}: {err}")
            headers["X-ClickHouse-Exception-Code"] = str(error.code)
            headers["Content-Type"] = "text/plain; charset=UTF-8"
            text = error.message
            if not _VERSION_RE.search(text):  # as the server signs its messages
                text += f" (version {engine.version})"
            self._send(500, f"{text}\n".encode(), headers)
            return
        headers["X-ClickHouse-Summary"] = json.dumps(reply.summary)
        if reply.fmt is not None:
            headers["X-ClickHouse-Format"] = reply.fmt
            headers["X-ClickHouse-Timezone"] = engine.timezone
            headers["Content-Type"] = _CONTENT_TYPES.get(reply.fmt.lower(), "text/plain; charset=UTF-8")
        self._send(200, reply.body, headers)

    def _read_body(self) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():  # generator bodies
            chunks = []
            while True:
                size = int(self.rfile.readline(65537).split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _send(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], engine: Engine) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, _Handler)
        self.engine = engine
        self.stopping = False
        self._active = 0
        self._idle = threading.Condition()

    def begin_request(self) -> bool:
        """Count a request in; False once stopping."""
        with self._idle:
            if self.stopping:
                return False
            self._active += 1
            return True

    def end_request(self) -> None:
        with self._idle:
            self._active -= 1
            self._idle.notify_all()

    def drain(self, timeout: float) -> None:
        """Refuse new requests and wait (bounded) for those under way to be answered."""
        with self._idle:
            self.stopping = True
            self._idle.wait_for(lambda: self._active == 0, timeout)


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def serve(path: str | Path, host: str, port: int) -> int:
    """Open the store, listen, print the ready line, serve until SIGTERM/SIGINT; 0 on a clean stop."""
    try:
        engine = Engine(path)
    except Exception as err:  # noqa: BLE001 - one line, e.g. the store is open in another process
        print(f"http_front: cannot open the store at {path}: {str(err).splitlines()[0]}", file=sys.stderr)
        return 1
    try:
        server = _Server((host, port), engine)
    except OSError as err:
        engine.close()
        print(f"http_front: cannot listen on {host}:{port}: {err}", file=sys.stderr)
        return 1

    def stop(signum: int, frame: Any) -> None:
        # shutdown() waits for serve_forever, which runs on this (the main) thread
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    bound_host, bound_port = server.server_address[:2]
    print(f"ClickHouse HTTP front for {engine.path} on http://{_url_host(str(bound_host))}:{bound_port}",
          flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()  # from here connections are refused
        server.drain(STOP_GRACE_S)
        engine.close()
    return 0


@dataclass
class FrontProcess:
    """A front running as a child process (tests, benchmarks): where it listens and how to stop it."""

    path: Path
    host: str
    port: int
    process: subprocess.Popen[str]
    output: collections.deque[str]

    @property
    def url(self) -> str:
        """The ``CLICKHOUSE_URL`` (without database) that reaches it."""
        return f"http://{_url_host(self.host)}:{self.port}"

    def log_tail(self) -> str:
        return "".join(self.output)

    def stop(self, timeout: float = 15.0) -> int:
        """SIGTERM, then wait: its exit code (0 = clean). Afterwards connections are refused."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
                raise RuntimeError(f"http_front did not stop in {timeout} s:\n{self.log_tail()}") from None
        return self.process.returncode


def start_front(path: str | Path, *, host: str = "127.0.0.1", port: int = 0,
                timeout: float = 30.0) -> FrontProcess:
    """Start ``python -m sinks.http_front`` and return once it accepts connections."""
    process = subprocess.Popen(
        [sys.executable, "-m", "sinks.http_front", "--path", str(path), "--host", host, "--port", str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1,
    )
    output: collections.deque[str] = collections.deque(maxlen=50)
    ready = threading.Event()
    found: list[str] = []

    def read() -> None:  # keeps draining, so the child can never block on a full pipe
        assert process.stdout is not None
        for line in process.stdout:
            output.append(line)
            if not ready.is_set() and line.startswith("ClickHouse HTTP front for "):
                found.append(line)
                ready.set()
        ready.set()

    threading.Thread(target=read, daemon=True, name="http-front-output").start()
    if not ready.wait(timeout) or not found:
        if process.poll() is None:
            process.kill()
        process.wait()
        raise RuntimeError(f"http_front did not start within {timeout} s:\n{''.join(output)}")
    bound_port = int(found[0].strip().rsplit(":", 1)[1])
    return FrontProcess(Path(path), host, bound_port, process, output)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sinks.http_front", description=__doc__.split("\n\n")[0])
    parser.add_argument("--path", required=True, help="directory of the embedded ClickHouse store")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, required=True, help="port to listen on; 0 picks a free one")
    args = parser.parse_args(argv)
    return serve(args.path, args.host, args.port)


if __name__ == "__main__":
    sys.exit(main())
