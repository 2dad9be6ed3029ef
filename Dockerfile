# One image for both deployables: `python -m service` (default) and `python -m batch` (the job).
# Same install steps as `make install`: the pinned requirements.lock, then the project with
# --no-deps. No credentials and no weights are baked in: the bundle and the weights come from
# a mount or from S3 (AWS_* variables and AWS_ENDPOINT_URL given at run time).

# ---- build: a virtual environment with the locked dependencies and the project ----
FROM python:3.11-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
COPY requirements.lock ./
RUN pip install --upgrade "pip>=24" && pip install -r requirements.lock
COPY pyproject.toml README.md ./
COPY models ./models
COPY batch ./batch
COPY service ./service
RUN pip install --no-deps .

# ---- runtime: the venv, Java for Spark, a non-root user ----
FROM python:3.11-slim-bookworm AS runtime
# Spark 4 needs Java 17+ (the job); the service alone does not use it.
RUN apt-get update \
    && apt-get install -y --no-install-recommends openjdk-17-jre-headless \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /opt/venv /opt/venv
RUN useradd --create-home --uid 10001 --shell /usr/sbin/nologin fruit \
    && mkdir -p /artifacts /weights && chown fruit:fruit /artifacts
ENV PATH=/opt/venv/bin:$PATH \
    PYSPARK_PYTHON=/opt/venv/bin/python \
    PYSPARK_DRIVER_PYTHON=/opt/venv/bin/python \
    TF_CPP_MIN_LOG_LEVEL=2 \
    PYTHONUNBUFFERED=1 \
    ARTIFACTS_URI=/artifacts
USER fruit
WORKDIR /home/fruit
# /artifacts: a bundle root (or set ARTIFACTS_URI=s3://...); /weights: optional Keras weights
# (WEIGHTS_FILE=/weights/resnet50.weights.h5) for hosts that cannot download ImageNet's.
VOLUME ["/artifacts", "/weights"]
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4).status != 200)"]
CMD ["python", "-m", "service", "--host", "0.0.0.0", "--port", "8000"]
