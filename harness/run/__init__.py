"""`kist-harness run`, the main job: build, network, traffic phases, checks, teardown, report.

``job`` the steps in order, with nothing left behind · ``plan`` one PhasePlan per phase,
planned once before anything starts · ``phase`` one traffic phase (collectors, client
loops, arm attribution, the period choice) · ``variants`` which variants can run here and
putting their shaping in force through the backend.
"""
