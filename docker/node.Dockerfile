# kist-harness node: the node base plus the tor binary under test and the traffic tool.
# Tagged by a hash of its inputs (this file, the base, tor binary, traffic.py), so a new
# patched build gives a new image and an unchanged one is reused.
ARG NODE_BASE
FROM ${NODE_BASE}
COPY bin/ /opt/kist/bin/
COPY traffic.py /opt/kist/traffic.py
