"""The ``--arch`` registry (kept apart so model files can register without import cycles)."""

from cmkd_edge._registry import Registry

ARCHS: Registry = Registry("arch")
