# The ledger's command line as an image (used by docker-compose.yml).
FROM python:3.11-slim
WORKDIR /opt/ansinh
COPY pyproject.toml README.md ./
COPY ledger ledger
COPY projections projections
COPY adapters adapters
COPY schemas schemas
COPY replay replay
RUN pip install --no-cache-dir .
ENTRYPOINT ["ledger"]
CMD ["--help"]
