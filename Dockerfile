# The monitor's worker image: `faust -A streams.app worker -l info` as a non-root user.
# The same image runs the tools (`python -m tools.topics create`, `python -m producers.replay ...`,
# `python -m streams.alerts`, `python -m sinks.query ...`); docker-compose.yml uses it for all of them.
FROM python:3.11.13-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# Install the project from pyproject.toml: its dependencies first, with empty packages, so that a
# change of the code does not download them again; then the code itself.
COPY pyproject.toml README.md ./
RUN mkdir streams producers sinks tools \
    && touch streams/__init__.py producers/__init__.py sinks/__init__.py tools/__init__.py \
    && pip install . \
    && rm -rf streams producers sinks tools build *.egg-info
COPY streams ./streams
COPY producers ./producers
COPY sinks ./sinks
COPY tools ./tools
RUN pip install --no-deps --force-reinstall . && rm -rf build *.egg-info

# A user of its own; the Faust data directory (MONITOR_DATA_DIR) is the only place the worker writes
# when CLICKHOUSE_URL names a server.
RUN useradd --create-home --uid 10001 --shell /usr/sbin/nologin monitor \
    && mkdir -p /var/lib/monitor \
    && chown monitor:monitor /var/lib/monitor
USER monitor
WORKDIR /home/monitor

ENV MONITOR_WEB_HOST=0.0.0.0 \
    MONITOR_WEB_PORT=6066 \
    MONITOR_DATA_DIR=/var/lib/monitor
EXPOSE 6066

# The worker's web server answers /status once the app is up.
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=4 \
    CMD python -c "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/status' % os.environ.get('MONITOR_WEB_PORT', '6066'), timeout=4)" || exit 1

# Exec form: faust is PID 1 and gets SIGTERM itself, so it writes everything it holds before it exits.
CMD ["faust", "-A", "streams.app", "worker", "-l", "info"]
