# ssp serve on one NVIDIA GPU: vLLM's engine behind ssp's OpenAI-compatible API (docs/serving.md).
#   docker compose up        (docker-compose.yml: ./models mounted, one GPU reserved, the key from SSP_API_KEY)
# The image installs the GPU profile (constraints/gpu.txt: torch 2.13.0, vLLM 0.31.0); CUDA comes with torch's
# wheels and the driver from the host through the NVIDIA container toolkit.
FROM python:3.11-slim

# gcc: Triton compiles its small launcher modules at run time.
RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/ssp
COPY pyproject.toml README.md ./
COPY constraints constraints
COPY ssp ssp
RUN pip install --no-cache-dir -c constraints/gpu.txt '.[vllm]'

# The model folder (e.g. runs/demo/rl/stages/main/model, copied to ./models/model) and the serving defaults;
# every one can be set in docker-compose.yml or with `docker run -e`.
ENV MODEL_PATH=/models/model \
    SERVED_MODEL_NAME=ssp \
    MAX_SEQUENCE_LENGTH=4096 \
    OPTIMAL_TEMPERATURE=0.6 \
    TOP_P=0.95 \
    MAX_CONCURRENT_REQUESTS=64 \
    HF_HUB_OFFLINE=1
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=10s --start-period=600s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=5)"]
# exec: ssp serve replaces the shell, so `docker stop`'s SIGTERM reaches it; in-flight requests finish before it exits.
CMD ["sh", "-c", "exec ssp serve --model \"$MODEL_PATH\" --served-model-name \"$SERVED_MODEL_NAME\" --host 0.0.0.0 --port 8000 --max-model-len \"$MAX_SEQUENCE_LENGTH\" --temperature \"$OPTIMAL_TEMPERATURE\" --top-p \"$TOP_P\" --max-concurrent-requests \"$MAX_CONCURRENT_REQUESTS\""]
