"""Offered traffic: file servers and clients through Tor, and the one driver that runs them.

``clients`` the file server and the web/bulk/perf clients (stdlib only: the same file runs
inside the node containers) · ``driver`` every client of a running network against its
file servers, spread over the servers, watching the nodes · ``profiles`` the scenario's
client profiles for its duration (`kist-harness net up --traffic`).
"""
