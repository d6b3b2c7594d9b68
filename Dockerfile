# One image for the finsent Python services (migrate, worker, api, simulate), built by
# docker-compose.yml. Default extras run ONNX Runtime on CPU (no torch); the GPU override builds
# it with --build-arg EXTRAS=stream,api,dashboards,train for the torch CUDA backend (PyPI torch wheels
# carry their CUDA libraries; the driver comes from the NVIDIA container runtime).
# No secret is baked in: DATABASE_URL and the rest arrive as environment variables.
# The ONNX graphs are not committed: a build stage with torch exports them from the committed
# fp16 weights (`finsent export`), and only the int8 and fp32 graphs (the int8 path rechecks
# near-ties with the fp32 one) are copied into the runtime image.
FROM python:3.11-slim AS source
ENV PIP_NO_CACHE_DIR=1 PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
WORKDIR /app
COPY pyproject.toml README.md requirements.lock ./
COPY core core
COPY finsent finsent
COPY models models
COPY stream stream
COPY api api
COPY dashboards dashboards
COPY scripts scripts

FROM source AS model
RUN pip install -c requirements.lock ".[train]" && finsent export --model models/artifacts/finsent-minilm-v2

FROM source
ARG EXTRAS=stream,api,dashboards
COPY --from=model /app/models/artifacts/finsent-minilm-v2/model.int8.onnx /app/models/artifacts/finsent-minilm-v2/model.onnx models/artifacts/finsent-minilm-v2/
RUN pip install -c requirements.lock ".[${EXTRAS}]" \
    && useradd --system --uid 10001 --no-create-home --home-dir /app finsent \
    && chown finsent /app
USER finsent
EXPOSE 6066 8000
CMD ["finsent", "worker"]
