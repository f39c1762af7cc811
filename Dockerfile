# The tasktide image: the client and worker runtime (with tracing) and the server, plus the example app.
# docker-compose.yml runs each service from it: `tasktide scheduler`, `registry`, `results`, `worker`,
# and its one-shot `setup` (deploy/compose-setup.sh: certificates by scripts/dev_certs.py, which needs
# the cryptography package, and tokens).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /app

COPY clients/python /app/clients/python
RUN pip install --no-cache-dir "/app/clients/python[otel]"

COPY pyproject.toml README.md /app/
COPY services /app/services
RUN pip install --no-cache-dir /app "cryptography>=42"

COPY examples /app/examples
COPY scripts/dev_certs.py /app/scripts/dev_certs.py

# gRPC (every service listens on 50051 in its container) and /metrics for Prometheus.
EXPOSE 50051 9464
CMD ["tasktide", "dev"]
