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
# The chain key is kept outside the store: this file, on a volume of its own in
# docker-compose.yml (`ledger init` makes it, mode 0600, when no LEDGER_CHAIN_KEY is given).
ENV LEDGER_CHAIN_KEY_FILE=/var/lib/ledger-key/chain.key
RUN mkdir -m 700 /var/lib/ledger-key
ENTRYPOINT ["ledger"]
CMD ["--help"]
