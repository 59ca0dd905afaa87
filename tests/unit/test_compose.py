"""docker-compose.yml and the Dockerfile, read as data: what `docker compose up` would be given.

Docker cannot run here, so these tests check what can go wrong on paper: unpinned images,
variables the settings module does not read (silently ignored by the worker), values it
would refuse at start-up, clashing host ports, volumes declared but not used, health checks
and dependencies that name nothing, and mounts of files that are not in the repository.
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from streams.settings import load_settings, variable_names

ROOT = Path(__file__).resolve().parents[2]
WORKER_COMMAND = "faust -A streams.app worker -l info"  # the contract's worker command, copied by hand
MONITOR_SERVICES = ("worker", "topics", "replay")
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?-)([^}]*))?\}")


def interpolate(value: object) -> str:
    """A compose value as `docker compose` sees it with no .env file: `${X:-default}` -> default.

    Every variable must carry a default, so that the stack starts without any setup.
    """
    text = str(value)

    def default(match: re.Match[str]) -> str:
        if match.group(2) is None:
            raise AssertionError(f"${{{match.group(1)}}} in {text!r} has no default")
        return match.group(3)

    return _VAR.sub(default, text.replace("$$", "\0")).replace("\0", "$")


def test_interpolate():
    assert interpolate("http://${U:-monitor}:${P-pw}@h:8123/db") == "http://monitor:pw@h:8123/db"
    assert interpolate("a$$b") == "a$b"
    with pytest.raises(AssertionError, match="has no default"):
        interpolate("${NOPE}")


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


@pytest.fixture(scope="module")
def services(compose: dict) -> dict[str, dict]:
    return compose["services"]


def env_of(service: dict) -> dict[str, str]:
    """The service's environment (mapping or list form), interpolated."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {key: interpolate(value) for key, value in env.items()}


def command_of(service: dict) -> str:
    command = service.get("command")
    return " ".join(command) if isinstance(command, list) else str(command)


def test_the_expected_services_exist(services):
    assert {"kafka", "clickhouse", "grafana", "worker", "topics", "replay"} <= set(services)


# --- images ---

def _tag(image: str) -> str:
    name = image.split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]
    return last.split(":", 1)[1] if ":" in last else ""


@pytest.mark.parametrize(("image", "tag"), [
    ("apache/kafka:3.9.1", "3.9.1"), ("localhost:5000/x:1.2", "1.2"), ("grafana/grafana", ""),
    ("python:3.11.13-slim-bookworm@sha256:abc", "3.11.13-slim-bookworm"),
])
def test_tag(image, tag):
    assert _tag(image) == tag


def test_every_image_is_pinned_to_an_exact_version(services):
    images = {name: s["image"] for name, s in services.items() if "image" in s}
    assert set(images) == set(services), "every service names an image (built ones are tagged too)"
    for name, image in images.items():
        tag = _tag(interpolate(image))
        assert tag and tag != "latest" and re.search(r"\d", tag), f"{name}: {image} is not pinned"
    # Exact versions of the third-party images: major.minor.patch at least, not a moving `25.3`.
    for name in ("kafka", "clickhouse", "grafana"):
        assert re.fullmatch(r"\d+\.\d+\.\d+(\.\d+)?", _tag(images[name])), images[name]
    assert images["kafka"].startswith("apache/kafka:")
    assert images["clickhouse"].startswith("clickhouse/clickhouse-server:")
    assert images["grafana"].startswith("grafana/grafana:")


def test_the_clickhouse_plugin_is_installed_at_a_pinned_version(services):
    plugins = env_of(services["grafana"])["GF_INSTALL_PLUGINS"].split(",")
    name_version = {p.split()[0]: p.split()[1:] for p in plugins}
    assert re.fullmatch(r"\d+\.\d+\.\d+", name_version["grafana-clickhouse-datasource"][0])


def test_monitor_services_are_built_from_the_dockerfile(services):
    for name in MONITOR_SERVICES:
        build = services[name]["build"]
        context = build if isinstance(build, str) else build.get("context", ".")
        assert (ROOT / context / "Dockerfile").is_file()


# --- the monitor's environment ---

@pytest.mark.parametrize("name", MONITOR_SERVICES)
def test_every_variable_is_a_setting_the_monitor_reads(services, name):
    unknown = set(env_of(services[name])) - set(variable_names())
    assert not unknown, f"{name} sets variables streams/settings.py does not read: {sorted(unknown)}"


@pytest.mark.parametrize("name", MONITOR_SERVICES)
def test_the_values_load_through_the_settings_module(services, name):
    load_settings(env_of(services[name]))  # raises SettingsError with one line on a bad value


def test_worker_settings_fit_the_stack(services):
    worker = load_settings(env_of(services["worker"]))
    kafka_env = env_of(services["kafka"])
    advertised = dict(reversed(item.split("://", 1)) for item in kafka_env["KAFKA_ADVERTISED_LISTENERS"].split(","))
    listener = advertised[worker.kafka_bootstrap_servers]
    assert listener == kafka_env["KAFKA_INTER_BROKER_LISTENER_NAME"], "the worker uses the internal listener"
    url = urlsplit(worker.clickhouse_url)
    clickhouse = env_of(services["clickhouse"])
    assert (url.scheme, url.hostname, url.port, url.path) == ("http", "clickhouse", 8123, "/monitoring")
    assert (url.username, url.password) == (clickhouse["CLICKHOUSE_USER"], clickhouse["CLICKHOUSE_PASSWORD"])
    assert worker.web_host == "0.0.0.0"
    assert worker.broker_rebalance_timeout >= 30 and worker.broker_session_timeout >= 20
    assert worker.data_dir.startswith("/")
    # The one-shot services talk to the same topics and brokers as the worker.
    for name in ("topics", "replay"):
        other = load_settings(env_of(services[name]))
        assert (other.kafka_bootstrap_servers, other.input_topics, other.topic_partitions) == (
            worker.kafka_bootstrap_servers, worker.input_topics, worker.topic_partitions)


def test_grafana_gets_the_clickhouse_credentials(services):
    grafana, clickhouse = env_of(services["grafana"]), env_of(services["clickhouse"])
    for key in ("CLICKHOUSE_USER", "CLICKHOUSE_PASSWORD"):
        assert grafana[key] == clickhouse[key]


def test_commands(services):
    assert command_of(services["worker"]) == WORKER_COMMAND
    assert command_of(services["topics"]) == "python -m tools.topics create"
    assert command_of(services["replay"]) == "python -m producers.replay --scenario degradation"
    assert services["replay"]["profiles"], "the replay runs on demand only"
    assert "replay" not in services["worker"].get("profiles", [])


# --- ports ---

def host_ports(service: dict) -> list[int]:
    """Published host ports of the short (`[ip:]host:container[/proto]`) and long syntax."""
    ports = []
    for entry in service.get("ports", []):
        if isinstance(entry, dict):
            if "published" in entry:
                ports.append(int(entry["published"]))
            continue
        parts = str(entry).split("/", 1)[0].split(":")
        if len(parts) >= 2:
            ports.append(int(parts[-2]))
    return ports


def test_host_ports_are_valid_and_unique(services):
    published = [(name, port) for name, s in services.items() for port in host_ports(s)]
    assert published, "kafka, clickhouse and grafana are reachable from the host"
    assert all(1 <= port <= 65535 for _, port in published)
    ports = [port for _, port in published]
    assert len(ports) == len(set(ports)), f"a host port is published twice: {published}"
    for name, s in services.items():
        for entry in s.get("ports", []) + s.get("expose", []):
            container = int(str(entry).split("/", 1)[0].split(":")[-1]) if not isinstance(entry, dict) \
                else int(entry["target"])
            assert 1 <= container <= 65535, name


def test_scalable_worker_has_no_fixed_host_port(services):
    assert not services["worker"].get("ports"), "replicas would collide on a fixed host port"
    assert services["worker"].get("container_name") is None, "a fixed container name cannot scale"


# --- volumes ---

def named_volumes(service: dict) -> list[str]:
    names = []
    for entry in service.get("volumes", []):
        source = entry.get("source", "") if isinstance(entry, dict) else str(entry).split(":", 1)[0]
        if isinstance(entry, dict) and entry.get("type") not in (None, "volume"):
            continue
        if source and not source.startswith((".", "/", "~")):
            names.append(source)
    return names


def test_each_named_volume_is_declared_and_used(compose, services):
    declared = set(compose.get("volumes") or {})
    used = {v for s in services.values() for v in named_volumes(s)}
    assert used == declared
    for name in ("kafka", "clickhouse", "grafana"):
        assert named_volumes(services[name]), f"{name} keeps its data in a named volume"


def test_grafana_mounts_point_at_the_repository(services):
    binds = {}
    for entry in services["grafana"]["volumes"]:
        parts = str(entry).split(":")
        if parts[0].startswith("."):
            binds[parts[1]] = (parts[0], parts[2:])
    assert binds == {"/etc/grafana/provisioning": ("./grafana/provisioning", ["ro"]),
                     "/var/lib/grafana/dashboards": ("./grafana/dashboards", ["ro"])}
    for source, _ in binds.values():
        assert (ROOT / source).is_dir(), f"{source} is not in the repository"


def test_grafana_provisioning_matches_the_compose_file(services):
    """The provisioning files (grafana/) read what the grafana service gives them."""
    grafana = services["grafana"]
    env = env_of(grafana)
    provisioning = ROOT / "grafana" / "provisioning"
    datasources = [d for f in sorted((provisioning / "datasources").glob("*.y*ml"))
                   for d in yaml.safe_load(f.read_text()).get("datasources", [])]
    clickhouse = [d for d in datasources if d.get("type") == "grafana-clickhouse-datasource"]
    assert clickhouse, "a ClickHouse data source is provisioned"
    for source in clickhouse:
        used = set(re.findall(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)", json.dumps(source)))
        assert used <= set(env), f"variables the grafana service does not set: {sorted(used - set(env))}"
        assert source["jsonData"]["host"] in services and source["jsonData"]["port"] == 8123
    providers = [p for f in sorted((provisioning / "dashboards").glob("*.y*ml"))
                 for p in yaml.safe_load(f.read_text()).get("providers", [])]
    assert {p["options"]["path"] for p in providers} == {"/var/lib/grafana/dashboards"}
    assert list((ROOT / "grafana" / "dashboards").glob("*.json")), "a dashboard to load"


def test_one_clickhouse_plugin_version_everywhere(services):
    """The installed plugin, the data source config and every dashboard query name the same version:
    the plugin migrates a query or config it takes for an older version's."""
    plugins = dict(p.split() for p in env_of(services["grafana"])["GF_INSTALL_PLUGINS"].split(","))
    installed = plugins["grafana-clickhouse-datasource"]
    provisioning = ROOT / "grafana" / "provisioning" / "datasources"
    configs = [d["jsonData"]["version"] for f in sorted(provisioning.glob("*.y*ml"))
               for d in yaml.safe_load(f.read_text())["datasources"] if d["type"] == "grafana-clickhouse-datasource"]
    assert configs == [installed]

    def targets(node: object) -> list[dict]:
        if isinstance(node, dict):
            found = [node] if "rawSql" in node else []
            return found + [t for value in node.values() for t in targets(value)]
        return [t for value in node for t in targets(value)] if isinstance(node, list) else []

    for dashboard in sorted((ROOT / "grafana" / "dashboards").glob("*.json")):
        queries = targets(json.loads(dashboard.read_text()))
        assert queries, dashboard.name
        assert {q.get("pluginVersion") for q in queries} == {installed}, dashboard.name


# --- health and order ---

@pytest.mark.parametrize("name", ["kafka", "clickhouse", "grafana", "worker"])
def test_health_checks_exist(services, name):
    check = services[name].get("healthcheck") or {}
    assert not check.get("disable") and check.get("test"), f"{name} has no health check"
    assert check["test"][0] in {"CMD", "CMD-SHELL"} and len(check["test"]) >= 2


def test_one_shot_services_drop_the_image_health_check(services):
    """The Dockerfile's HEALTHCHECK asks the worker's /status: a tool run from the same image serves
    none, and would be reported unhealthy while it runs."""
    image_check = [args for instr, args in dockerfile() if instr == "HEALTHCHECK"]
    assert image_check and "/status" in image_check[0]
    for name in MONITOR_SERVICES:
        if name != "worker":
            assert services[name].get("healthcheck") == {"disable": True}, name


def test_worker_health_check_asks_the_status_page(services):
    worker = load_settings(env_of(services["worker"]))
    test = " ".join(services["worker"]["healthcheck"]["test"])
    assert f"127.0.0.1:{worker.web_port}/status" in test


def test_depends_on_points_at_defined_services(services):
    allowed = {"service_started", "service_healthy", "service_completed_successfully"}
    for name, s in services.items():
        depends = s.get("depends_on") or {}
        if isinstance(depends, list):
            depends = {d: {"condition": "service_started"} for d in depends}
        for target, spec in depends.items():
            assert target in services and target != name, f"{name} depends on unknown {target}"
            condition = spec.get("condition", "service_started")
            assert condition in allowed, f"{name} -> {target}: {condition}"
            if condition == "service_healthy":
                assert services[target].get("healthcheck"), f"{name} waits for {target}'s missing health check"
            if condition == "service_completed_successfully":
                assert services[target].get("restart", "no") == "no", f"{target} must be a one-shot"
    assert services["worker"]["depends_on"]["topics"]["condition"] == "service_completed_successfully"


# --- Dockerfile ---

def dockerfile() -> list[tuple[str, str]]:
    """(instruction, arguments) with continuation lines joined and comments dropped."""
    text = (ROOT / "Dockerfile").read_text()
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    joined = re.sub(r"\\\n", " ", "\n".join(lines))
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line.strip() else "")
            for line in joined.splitlines() if line.strip()]


def test_dockerfile_base_image_is_pinned():
    base = [args for instr, args in dockerfile() if instr == "FROM"]
    assert len(base) == 1
    image = base[0].split()[0]
    assert image.startswith("python:3.11.")
    assert re.fullmatch(r"3\.11\.\d+-slim(-\w+)?", _tag(image)), image


def test_dockerfile_runs_the_worker_command_as_a_non_root_user():
    steps = dockerfile()
    cmd = [args for instr, args in steps if instr == "CMD"]
    assert len(cmd) == 1
    assert " ".join(json.loads(cmd[0])) == WORKER_COMMAND  # exec form: faust gets SIGTERM itself
    users = [args for instr, args in steps if instr == "USER"]
    assert users and users[-1] not in {"root", "0"}
    health = [args for instr, args in steps if instr == "HEALTHCHECK"]
    assert len(health) == 1 and "/status" in health[0]
    installs = [args for instr, args in steps if instr == "RUN" and "pip install" in args]
    assert any(shlex.split(a.split("pip install", 1)[1].split("&&", 1)[0])[-1] == "." for a in installs)


def test_the_readme_documents_the_same_worker_command():
    assert f"`{WORKER_COMMAND}`" in (ROOT / "README.md").read_text()


def test_dockerignore_keeps_local_state_out_of_the_image():
    ignored = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")}
    assert {".venv", ".data", ".git"} <= ignored
