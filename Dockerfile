# One image for both deployables: `python -m service` (default) and `python -m batch` (the job).
# Same install steps as `make install`: the pinned requirements.lock, then the project with
# --no-deps (make install also adds requirements-dev.lock's test tools; the image has none).
# No credentials and no weights are baked in: the bundle and the weights come from a mount or
# from S3 (AWS_* variables and AWS_ENDPOINT_URL given at run time).
#
# Offline builds (no image registry, no package index; see README "Container"):
#   --build-arg BASE=localhost/python:3.11-slim-bookworm   a Debian bookworm base with python3 built
#                                                          locally (scripts/image-test.sh makes one)
#   --build-arg WHEELHOUSE=wheelhouse                      a folder of the build context holding
#       wheels of requirements.lock, pip and setuptools (`pip wheel -r requirements.lock "pip>=24"
#       "setuptools>=77" -w wheelhouse`); pip then installs from it with no index.
# Defaults: the public python image and PyPI.
ARG BASE=python:3.11-slim-bookworm

# ---- build: a virtual environment with the locked dependencies and the project ----
FROM ${BASE} AS build
ARG WHEELHOUSE=""
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
COPY requirements.lock ./
# With WHEELHOUSE empty this copies only the lock file; the folder stays in the build stage.
COPY requirements.lock ${WHEELHOUSE} /wheelhouse/
# pip reads PIP_NO_INDEX / PIP_FIND_LINKS, also in the isolated build of the project below.
RUN if [ -n "$WHEELHOUSE" ]; then export PIP_NO_INDEX=1 PIP_FIND_LINKS=/wheelhouse; fi \
    && pip install --upgrade "pip>=24" && pip install -r requirements.lock
COPY pyproject.toml README.md ./
COPY models ./models
COPY batch ./batch
COPY service ./service
COPY evaluation ./evaluation
RUN if [ -n "$WHEELHOUSE" ]; then export PIP_NO_INDEX=1 PIP_FIND_LINKS=/wheelhouse; fi \
    && pip install --no-deps .

# ---- runtime: the venv, Java for Spark, a non-root user ----
FROM ${BASE} AS runtime
# Spark 4 needs Java 17+ (the job); the service alone does not use it.
RUN apt-get update \
    && apt-get install -y --no-install-recommends openjdk-17-jre-headless \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /opt/venv /opt/venv
RUN useradd --create-home --uid 10001 --shell /usr/sbin/nologin fruit \
    && mkdir -p /artifacts /weights /feedback && chown fruit:fruit /artifacts /feedback
ENV PATH=/opt/venv/bin:$PATH \
    PYSPARK_PYTHON=/opt/venv/bin/python \
    PYSPARK_DRIVER_PYTHON=/opt/venv/bin/python \
    TF_CPP_MIN_LOG_LEVEL=2 \
    PYTHONUNBUFFERED=1 \
    ARTIFACTS_URI=/artifacts
USER fruit
WORKDIR /home/fruit
# /artifacts: a bundle root (or set ARTIFACTS_URI=s3://...); /weights: optional Keras weights
# (WEIGHTS_FILE=/weights/resnet50.weights.h5) for hosts that cannot download ImageNet's;
# /feedback: FEEDBACK_URI for a service whose bundle store is read-only (docker-compose.yml).
VOLUME ["/artifacts", "/weights", "/feedback"]
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4).status != 200)"]
CMD ["python", "-m", "service", "--host", "0.0.0.0", "--port", "8000"]
