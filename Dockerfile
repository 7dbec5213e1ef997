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
# The chain key and the cipher keys (that seal personal data) are kept outside the store: these
# files, on a volume of their own in docker-compose.yml (`ledger init` makes them, mode 0600,
# when no LEDGER_CHAIN_KEY or LEDGER_CIPHER_KEY is given; `ledger keys rotate` adds a key).
ENV LEDGER_CHAIN_KEY_FILE=/var/lib/ledger-key/chain.key
ENV LEDGER_CIPHER_KEY_FILE=/var/lib/ledger-key/cipher.keys
RUN mkdir -m 700 /var/lib/ledger-key
ENTRYPOINT ["ledger"]
CMD ["--help"]
