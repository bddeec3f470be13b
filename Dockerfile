# One image for the collector and every demo service; docker-compose.yml picks the command per service.
# Reproducible: dependencies are installed exactly as pinned in uv.lock (`uv sync --frozen`).
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PROJECT_ENVIRONMENT=/opt/venv
RUN pip install --no-cache-dir "uv==0.13.9"

WORKDIR /app
# Dependencies first (a cached layer while only the code changes), then the project itself.
COPY pyproject.toml uv.lock README.md LICENSE ./
RUN uv sync --frozen --no-dev --extra demo --no-install-project
COPY . .
RUN uv sync --frozen --no-dev --extra demo

# Run as an unprivileged user; /data holds a SQLite store when one is used.
RUN useradd --system --uid 10001 --no-create-home --home-dir /app plyra \
    && mkdir -p /data && chown plyra:plyra /data
USER plyra
ENV PATH=/opt/venv/bin:$PATH PYTHONPATH=/app

EXPOSE 4318
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request as u; r = u.urlopen('http://127.0.0.1:4318/api/v1/health', timeout=2); sys.exit(r.status != 200)"]
CMD ["plyra-trace", "serve", "--host", "0.0.0.0", "--port", "4318", "--db", "/data/plyra.db", "--open"]
