# The OCRFlux Stream image: the `ocrflux` command, the stream workers and the document API.
# vLLM is not in it (no `vllm` extra): the model runs in the vllm/vllm-openai container of
# docker-compose.yml, or on a GPU host started with start_vllm_a100.sh.
#
#   docker build -t ocrflux-stream .
#   docker run --rm ocrflux-stream --help
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
WORKDIR /src
COPY pyproject.toml README.md requirements.lock ./
COPY ocrflux ./ocrflux
COPY schemas ./schemas
COPY streams ./streams
COPY connectors ./connectors
COPY deploy ./deploy
# The versions the tests passed with (requirements.lock); runtime dependencies only.
RUN /opt/venv/bin/pip install -c requirements.lock .

FROM ${PYTHON_IMAGE}
# OCRFLUX_HOME holds what the code would otherwise keep in the checkout's .cache/: the
# workers' state folders and the file:// blob folder.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    OCRFLUX_HOME=/var/lib/ocrflux
RUN useradd --system --uid 10001 --user-group --create-home --home-dir /var/lib/ocrflux \
        --shell /usr/sbin/nologin ocrflux
COPY --from=build /opt/venv /opt/venv
USER ocrflux
WORKDIR /var/lib/ocrflux
# The document API's port (API_PORT); workers serve metrics on OCRFLUX_METRICS_PORT.
EXPOSE 8001
ENTRYPOINT ["ocrflux"]
CMD ["worker"]
