# syntax=docker/dockerfile:1
# Consentry image: the `consentry` command (API, worker, capture servers, CLI).
#   docker build -t consentry .
#   docker run --rm consentry --help
# docker-compose.yml runs the whole stack from it.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
# Only what the package needs, so the build context's .venv, databases and captures never
# reach the image.
COPY pyproject.toml README.md ./
COPY engine/ engine/
COPY campaigns/ campaigns/
COPY gating/ gating/
COPY metrics/ metrics/
COPY templates/ templates/
# Wheels for Consentry and every dependency (asyncpg, hiredis... ship manylinux wheels, so
# the runtime image needs no compiler).
RUN pip wheel --wheel-dir /wheels '.[dkim]'

FROM ${PYTHON_IMAGE}
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-index --find-links=/wheels 'consentry[dkim]'
# An unprivileged user; /capture is created here so a named volume mounted on it inherits
# the owner and the capture servers can write their messages.jsonl.
RUN useradd --system --uid 10001 --user-group --home-dir /app --create-home consentry \
    && mkdir /capture && chown consentry:consentry /capture
USER consentry
WORKDIR /app
# 8080: API; 9109: API /metrics; 9108: worker /metrics; 1025, 8025: capture servers.
EXPOSE 8080 9109 9108 1025 8025
ENTRYPOINT ["consentry"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8080"]
