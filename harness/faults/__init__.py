"""Fault figures: ``python -m harness.faults`` injects real faults and prints what survived.

One module per fault, each against a real patched tor in a local private network with
traffic through it (``common``): tor SIGKILLed and restarted (``tor_kill``), the collector
SIGKILLed mid-write (``collector_kill``), the store's filesystem full (``disk_full``, a
real tmpfs), the control port closed and reopened (``control_flap``, the kernel refusing
and resetting connections). Each returns a ``Figure``: the counts the issue asks for, and
whether its goal was met.
"""
