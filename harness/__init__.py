"""kist-harness: build, run, observe and cross-check Tor relays' socket scheduler.

Everything here touches the outside world (Tor source, Docker, SSH, control ports,
files); the pure model it checks against lives in :mod:`kist_reference`.
"""

__version__ = "0.1.0"
