"""ecosync defs."""
