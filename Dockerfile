# A small chainnode image: non-root, the node installed with a plain `pip install .` (not
# editable) in a build stage and copied into a clean slim image without compilers or sources.
#
#   docker build -t chainnode .
#   docker run -v network:/etc/chainnode:ro -v data:/var/lib/chainnode chainnode \
#       node run --config /etc/chainnode/network/nodes/validator-01/node.toml
#
# Volumes: /etc/chainnode holds the network directory (node.toml, certificates, keys, genesis),
# /var/lib/chainnode the node's LevelDB data (`network init --data-dir /var/lib/chainnode/data`).
# Both belong to the chainnode user (uid 10001), so a fresh named volume mounted there starts
# owned by it; a directory bind-mounted from the host must be readable (keys) or writable (data)
# by uid 10001.  deploy/compose.yaml runs a whole network this way.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md cli.py ./
COPY chainnode ./chainnode
COPY consensus ./consensus
COPY storage ./storage
COPY p2p ./p2p
COPY config ./config
RUN pip install --no-cache-dir --root-user-action=ignore --prefix=/install .

FROM python:3.11-slim
COPY --from=build /install /usr/local
RUN useradd --system --uid 10001 --user-group --home-dir /var/lib/chainnode --no-create-home chainnode \
    && mkdir -p /var/lib/chainnode /etc/chainnode \
    && chown chainnode:chainnode /var/lib/chainnode /etc/chainnode
USER 10001:10001
WORKDIR /var/lib/chainnode
VOLUME ["/var/lib/chainnode", "/etc/chainnode"]
# p2p and API ports as `network init` gives them when every node has its own host.
EXPOSE 26600 26601
ENV PYTHONUNBUFFERED=1 CHAINNODE_API_PORT=26601
# /healthz answers while the process serves; /readyz says whether it is caught up.
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ['CHAINNODE_API_PORT'] + '/healthz', timeout=2)"]
ENTRYPOINT ["chainnode"]
CMD ["--help"]
