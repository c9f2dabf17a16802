"""ecosync bench."""
