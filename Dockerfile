# A chainnode image: `docker run chainnode node run --config /network/nodes/validator-01/node.toml`
# Installed editable so the pilot definition in /opt/chainnode/config stays beside the code.
FROM python:3.11-slim

WORKDIR /opt/chainnode
COPY pyproject.toml README.md cli.py ./
COPY chainnode ./chainnode
COPY consensus ./consensus
COPY storage ./storage
COPY p2p ./p2p
COPY config ./config
RUN pip install --no-cache-dir -e . \
    && useradd --system --home-dir /var/lib/chainnode --create-home chainnode
USER chainnode
WORKDIR /var/lib/chainnode
EXPOSE 26600 26601
ENTRYPOINT ["chainnode"]
CMD ["--help"]
