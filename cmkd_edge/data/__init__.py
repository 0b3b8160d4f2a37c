"""Placeholder; filled by its stage."""
