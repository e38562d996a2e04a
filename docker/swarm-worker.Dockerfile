# A second Docker engine in a (privileged) container, to be joined to this machine's swarm as a
# worker: the two-node swarm of the Swarm backend's tests. Built from the project's own base image
# (no registry pull); its engine API listens on TCP inside the host's default bridge only.
ARG BASE=kist-harness/base:bookworm
FROM ${BASE}
RUN apt-get update -q \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
      docker.io iproute2 iptables procps ca-certificates \
 && rm -rf /var/lib/apt/lists/*
CMD ["dockerd", "-H", "unix:///var/run/docker.sock", "-H", "tcp://0.0.0.0:2375", "--tls=false", "--storage-driver", "overlay2"]
