# syntax=docker/dockerfile:1
# The serving image: `pip install .` (no extras: no torch) + the bundled default model store.
#   docker build -t soundscape .
#   docker run -p 8000:8000 soundscape                                           # bundled model
#   docker run -p 8000:8000 -v /path/store:/models:ro -e SOUNDSCAPE_STORE_PATH=/models soundscape
# `make docker-check` builds it with podman and serves a prediction from it (scripts/docker_check.py);
# tests/app/test_packaging.py runs the same install into a fresh venv and checks `soundscape serve`.

FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY soundscape ./soundscape
COPY app ./app
COPY model_store ./model_store
# Wheels for the package and every dependency, so the runtime stage installs offline.
RUN pip wheel --no-cache-dir --wheel-dir /wheels . && sha256sum /wheels/*.whl > /wheels.sha256

FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    SOUNDSCAPE_HOST=0.0.0.0 \
    SOUNDSCAPE_PORT=8000
RUN useradd --create-home --uid 10001 --shell /usr/sbin/nologin soundscape
# The wheels' checksums, copied (content-addressed): a layer cache keys a RUN on its bind mounts' source stage
# not at all in podman/buildah, so without this a new wheel (a new bundled model) reused the old install layer.
COPY --from=build /wheels.sha256 /tmp/wheels.sha256
# Slim: no bytecode for the whole tree (--no-compile) and no test suites of the dependencies; then bytecode only
# for what serving imports (written by importing it once, as root), so start-up stays fast. Nothing from torch.
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-cache-dir --no-compile --no-index --find-links=/wheels soundscape \
    && site=$(python -c "import sysconfig; print(sysconfig.get_paths()['purelib'])") \
    && find "$site/numpy" "$site/scipy" -depth -type d -name tests -exec rm -rf {} + \
    && PYTHONDONTWRITEBYTECODE= python -c "import sys, app.main, app.cli, soundscape.audio.reader, \
soundscape.audio.frontend, soundscape.inference, soundscape.spectrogram, uvicorn.loops.uvloop, \
uvicorn.protocols.http.httptools_impl, uvicorn.lifespan.on; app.main.create_app(); \
assert 'torch' not in sys.modules"
USER soundscape
WORKDIR /home/soundscape
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/readyz', timeout=4).status != 200)"]
CMD ["soundscape", "serve", "--host", "0.0.0.0"]
