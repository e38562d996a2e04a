"""Checks over a store; each module owns its result types.

``differential`` every KIST run replayed through kist_reference (``DiffSummary``,
``DivergentRun``) · ``queuetimes`` Tor's per-cell queue times against the recorded
decisions (``QueueCheck``) · ``arms`` per-arm A/B summary of a collection (``ArmSummary``)
with ``stats`` (Welch, Mann-Whitney, bootstrap intervals) · ``coverage`` which of the model's
decision branches the replayed runs took (``CoverageReport``), with ``reachability``,
``corpus`` and ``edge`` (the edge scenario that drives real tor into the rare ones) ·
``policy`` a researcher's policy (``--policy module:Class``) that judges the runs instead
of the faithful model (``PolicySpec``).
"""
