"""The local broker: `python -m tools.broker` as `make broker` / `make down` run it, and the API tests use."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from streams.settings import load_settings
from tools.broker import (
    BrokerError,
    default_address,
    free_port,
    port_answers,
    running_broker,
    start_broker,
    stop_broker,
    wait_ready,
)

ROOT = Path(__file__).resolve().parents[2]


def broker_cli(cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Run the CLI from `cwd` (so `.data` lands there) with the project importable."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("KAFKA_", "MONITOR_"))}
    clean["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), clean.get("PYTHONPATH")]))
    return subprocess.run([sys.executable, "-m", "tools.broker", *args], cwd=cwd, env={**clean, **env},
                          capture_output=True, text=True, timeout=60)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return not stat.exists() or stat.read_text().rpartition(")")[2].split()[0] != "Z"


@pytest.mark.integration
def test_cli_start_twice_status_stop(tmp_path):
    port = free_port()
    try:
        first = broker_cli(tmp_path, "start", "--port", str(port))
        assert first.returncode == 0, first.stderr
        pid = int((tmp_path / ".data" / "broker.pid").read_text())
        assert first.stdout == f"broker started (pid {pid}) on 127.0.0.1:{port}; log: .data/broker.log\n"
        wait_ready(f"127.0.0.1:{port}", timeout=5)  # still serving after the starting process exited

        second = broker_cli(tmp_path, "start", "--port", str(port))
        assert (second.returncode, second.stdout) == (0, f"broker already running (pid {pid}) on 127.0.0.1:{port}\n")

        status = broker_cli(tmp_path, "status")
        assert status.returncode == 0
        assert status.stdout.startswith(f"broker running (pid {pid}) on 127.0.0.1:{port}")

        stopped = broker_cli(tmp_path, "stop")
        assert (stopped.returncode, stopped.stdout) == (0, f"broker stopped (pid {pid})\n")
        assert not (tmp_path / ".data" / "broker.pid").exists()
        assert not alive(pid)
        assert not port_answers("127.0.0.1", port)
        assert "listening on: tcp://127.0.0.1:" in (tmp_path / ".data" / "broker.log").read_text()

        assert broker_cli(tmp_path, "stop").stdout == "broker not running\n"
        after = broker_cli(tmp_path, "status")
        assert (after.returncode, after.stdout) == (1, "broker not running\n")
    finally:
        stop_broker(tmp_path / ".data")


@pytest.mark.integration
def test_cli_port_from_kafka_bootstrap_servers_and_data_dir_setting(tmp_path):
    port = free_port()
    env = {"KAFKA_BOOTSTRAP_SERVERS": f"localhost:{port}", "MONITOR_DATA_DIR": "state"}
    try:
        started = broker_cli(tmp_path, "start", "--host", "127.0.0.1", **env)
        assert started.returncode == 0, started.stderr
        assert f"on 127.0.0.1:{port};" in started.stdout
        assert (tmp_path / "state" / "broker.pid").exists()
        other = broker_cli(tmp_path, "start", "--port", str(free_port()), **env)
        assert other.returncode == 1
        assert other.stderr.startswith("broker: another broker (pid ")
    finally:
        assert broker_cli(tmp_path, "stop", **env).stdout.startswith("broker stopped")


@pytest.mark.integration
def test_cli_port_taken_by_something_else_is_one_clear_line(tmp_path, broker):
    result = broker_cli(tmp_path, "start", "--port", str(broker.port))
    assert result.returncode == 1
    assert result.stderr == (f"broker: port {broker.port} on 127.0.0.1 is already in use by another process: "
                             "stop it or choose another port with --port\n")
    assert not (tmp_path / ".data" / "broker.pid").exists()


@pytest.mark.integration
def test_port_bound_but_not_listening_is_reported_from_the_brokers_own_failure(tmp_path):
    # Nothing answers, so only Tansu's AddrInUse exit (code 0, after a panic) can tell.
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        port = holder.getsockname()[1]
        with pytest.raises(BrokerError, match=f"^port {port} on 127.0.0.1 is already in use by another process"):
            start_broker(port, data_dir=tmp_path)
    assert "AddrInUse" in (tmp_path / f"broker-{port}.log").read_text()


@pytest.mark.integration
def test_cli_bad_setting_exits_2(tmp_path):
    result = broker_cli(tmp_path, "status", KAFKA_BOOTSTRAP_SERVERS="nonsense")
    assert result.returncode == 2
    assert result.stderr.startswith("broker: KAFKA_BOOTSTRAP_SERVERS='nonsense' is not valid:")


@pytest.mark.integration
def test_stale_pid_file_of_another_program_is_never_signalled(tmp_path):
    data = tmp_path / ".data"
    data.mkdir()
    (data / "broker.pid").write_text(f"{os.getpid()}\n")  # this very test process
    assert running_broker(data) is None
    assert not (data / "broker.pid").exists()
    (data / "broker.pid").write_text(f"{os.getpid()}\n")
    assert broker_cli(tmp_path, "stop").stdout == "broker not running\n"
    assert alive(os.getpid())


@pytest.mark.integration
def test_api_start_and_stop(tmp_path):
    broker = start_broker(data_dir=tmp_path, detached=False)
    assert broker.bootstrap == f"127.0.0.1:{broker.port}"
    assert broker.process is not None and broker.pid == broker.process.pid
    wait_ready(broker.bootstrap, timeout=2)
    assert broker.log_path.parent == tmp_path
    assert stop_broker(broker) is True
    assert broker.process.returncode is not None
    assert not port_answers(broker.host, broker.port)
    assert stop_broker(broker) is False


@pytest.mark.integration
def test_api_detached_broker_is_found_by_its_pid_file(tmp_path):
    broker = start_broker(free_port(), data_dir=tmp_path, detached=True)
    try:
        found = running_broker(tmp_path)
        assert found is not None and (found.pid, found.port) == (broker.pid, broker.port)
    finally:
        assert stop_broker(tmp_path / "broker.pid") is True
    assert not (tmp_path / "broker.pid").exists()
    assert stop_broker(tmp_path) is False


@pytest.mark.integration
def test_api_port_in_use_raises(tmp_path, broker):
    with pytest.raises(BrokerError, match=f"^port {broker.port} on 127.0.0.1 is already in use"):
        start_broker(broker.port, data_dir=tmp_path)


@pytest.mark.integration
def test_wait_ready_fails_on_a_closed_port_within_its_timeout():
    began = time.monotonic()
    with pytest.raises(BrokerError, match="nothing answers on"):
        wait_ready(f"127.0.0.1:{free_port()}", timeout=0.5)
    assert time.monotonic() - began < 3


@pytest.mark.integration
def test_wait_ready_wants_a_kafka_answer_not_just_an_open_port():
    with socket.create_server(("127.0.0.1", 0)) as silent:
        port = silent.getsockname()[1]
        with pytest.raises(BrokerError, match="accepts connections but answered no Kafka metadata request"):
            wait_ready(f"127.0.0.1:{port}", timeout=1.5)


def test_default_address_follows_a_local_bootstrap_only():
    assert default_address(load_settings({})) == ("127.0.0.1", 9092)
    assert default_address(load_settings({"KAFKA_BOOTSTRAP_SERVERS": "localhost:19093,b:9092"})) == ("localhost", 19093)
    assert default_address(load_settings({"KAFKA_BOOTSTRAP_SERVERS": "[::1]:9094"})) == ("::1", 9094)
    assert default_address(load_settings({"KAFKA_BOOTSTRAP_SERVERS": "kafka.prod:9092"})) == ("127.0.0.1", 9092)
