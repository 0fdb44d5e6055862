# Roundtable: slim image, non-root user, SQLite on the /data volume by default.
# BASE_IMAGE: any Debian-like image with Python 3.11+ and its venv module. The default is
# the official image; CI builds on a local Debian bookworm base made with debootstrap.
ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE}

# A virtual environment works the same on the official image and on Debian's python3,
# whose pip refuses to install into the system (PEP 668).
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    ROUNDTABLE_DATABASE_URL=sqlite:////data/roundtable.db \
    ROUNDTABLE_HEALTH_PORT=8080

WORKDIR /app
COPY pyproject.toml README.md ./
COPY bot ./bot
RUN python3 -m venv /opt/venv && /opt/venv/bin/python -m pip install .

COPY config ./config
COPY prompts ./prompts
COPY schemas ./schemas

RUN useradd --create-home --uid 10001 roundtable \
    && mkdir -p /data && chown roundtable:roundtable /data
USER roundtable
VOLUME ["/data"]
# 8080: /healthz and /metrics (ROUNDTABLE_HEALTH_PORT); 3000: Slack HTTP mode (slack.port)
EXPOSE 8080 3000

CMD ["python", "-m", "bot", "run"]
