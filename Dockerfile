# apudae on a GPU host: `docker compose up` (docker-compose.yml) or `docker build -t apudae .`
FROM nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04

ENV DEBIAN_FRONTEND=noninteractive PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    PATH=/opt/venv/bin:$PATH
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv \
 && rm -rf /var/lib/apt/lists/* \
 && python3 -m venv /opt/venv

WORKDIR /app
COPY pyproject.toml README.md ./
COPY models ./models
COPY training ./training
COPY service ./service
# the project, then onnxruntime's GPU build in place of the CPU one
RUN pip install . \
 && pip uninstall -y onnxruntime \
 && pip install onnxruntime-gpu

RUN useradd --uid 10001 --create-home --shell /usr/sbin/nologin apudae \
 && mkdir -p /var/lib/apudae/evaluations \
 && chown apudae:apudae /var/lib/apudae/evaluations
USER apudae

# the shipped bundles are in /app/models; evaluation results go to a volume
ENV APUDAE_MODEL_DIR=/app/models APUDAE_EVAL_DIR=/var/lib/apudae/evaluations \
    APUDAE_HOST=0.0.0.0 APUDAE_PORT=8000
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=3s --start-period=120s --retries=3 \
  CMD ["python3", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2)"]
CMD ["apudae", "serve"]
