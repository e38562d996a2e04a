# kist-harness node base: everything a private-network node needs except the tor under test.
# The stock tor package brings the shared libraries the patched build links against
# (libevent, libssl, zlib, liblzma, libzstd, libcap, libseccomp, libsystemd) and tor-gencert.
ARG BASE=kist-harness/base:bookworm
FROM ${BASE}
RUN apt-get update -q \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
      tor iproute2 iptables python3 procps ca-certificates \
 && rm -rf /var/lib/apt/lists/*
# Containers run nodes in the foreground as root with a bind-mounted data dir.
RUN mkdir -p /opt/kist
