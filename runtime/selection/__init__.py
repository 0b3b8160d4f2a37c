"""``cmkd-edge select``: which artifact, on which backend, with how many threads, fits a device budget.

``records`` (what selection.json holds), ``budget`` (units and the check), ``measure`` (through
``evaluate_bundle`` and ``profile_one``, cached per artifact and device), ``choose`` (front and
decision). numpy and the runtime only: it runs on the base install (no torch).
"""
