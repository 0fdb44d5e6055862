# Roundtable: slim image, non-root user, SQLite on the /data volume by default.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    ROUNDTABLE_DATABASE_URL=sqlite:////data/roundtable.db

WORKDIR /app
COPY pyproject.toml README.md ./
COPY bot ./bot
RUN pip install .

COPY config ./config
COPY prompts ./prompts
COPY schemas ./schemas

RUN useradd --create-home --uid 10001 roundtable \
    && mkdir -p /data && chown roundtable:roundtable /data
USER roundtable
VOLUME ["/data"]
EXPOSE 3000

CMD ["python", "-m", "bot", "run"]
