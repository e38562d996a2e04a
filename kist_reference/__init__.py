"""kist_reference: an executable specification of Tor's socket scheduler (Tor 0.4.9.11).

Pure Python, standard library only, deterministic. It never imports :mod:`harness`.
Its run records (:mod:`kist_reference.trace`) are the contract with the Tor patch.
"""

__version__ = "0.1.0"
