"""cmkd-edge: cross-modal knowledge distillation from experiment to edge device.

Nothing heavy is imported here so that ``cmkd-edge classify`` starts on a device that has only the
runtime's dependencies.
"""

__version__ = "0.1.0"
