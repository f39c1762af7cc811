# The tasktide image: the client and worker runtime (with tracing) and the server, plus the example app.
# docker-compose.yml runs each service from it: `tasktide scheduler`, `registry`, `results`, `worker`.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /app

COPY clients/python /app/clients/python
RUN pip install --no-cache-dir "/app/clients/python[otel]"

COPY pyproject.toml README.md /app/
COPY services /app/services
RUN pip install --no-cache-dir /app

COPY examples /app/examples

# gRPC (every service listens on 50051 in its container) and /metrics for Prometheus.
EXPOSE 50051 9464
CMD ["tasktide", "dev"]
