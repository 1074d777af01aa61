# The image the tests run: FROM scratch, holding binaries built on the host
# (`make image-test`), so that no registry is needed:
#   /usr/local/bin/rethinkdb-agent  the agent (CGO_ENABLED=0, static)
#   /usr/local/bin/rethinkdb        rethinkdb-sim, standing in for rethinkdb
# Same entrypoint and layout as docker/Dockerfile. There is no init inside:
# compose runs it with `init: true` (the engine's docker-init, tini).
FROM scratch
# The e2e tests prune the dangling images of earlier builds by this label.
LABEL io.github.rethinkdb-agent.test-image="1"
COPY rethinkdb-agent rethinkdb /usr/local/bin/
ENV PATH=/usr/local/bin \
    RETHINKDB_AGENT_DATA_ROOT=/data
# Empty directories: /tmp for the password config file, /data the volume.
WORKDIR /tmp
WORKDIR /data
VOLUME /data
EXPOSE 28015 29015 8080
ENTRYPOINT ["rethinkdb-agent", "exec", "--"]
CMD ["rethinkdb", "--bind", "all"]
