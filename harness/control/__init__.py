"""Reaching a tor control port, turning its events into typed records, storing them.

Modules, one job each: ``transport`` (TCP, unix socket, SSH seam), ``auth``,
``events`` (stem event classes incl. the patch's), ``records``, ``buffer`` (the bounded
queue between stem and the writer), ``store`` (SQLite), ``collector`` (the long-running
loop), ``abtest`` (interleaved scheduler experiments and their statistics).
"""
