# The finsent worker image (ONNX Runtime on CPU; no torch). Built by docker-compose.yml.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY finsent finsent
COPY models models
COPY stream stream
COPY scripts scripts
RUN pip install --no-cache-dir ".[stream]"
ENV HF_HUB_OFFLINE=1 FINSENT_WEB_HOST=0.0.0.0
EXPOSE 6066
CMD ["finsent", "worker"]
