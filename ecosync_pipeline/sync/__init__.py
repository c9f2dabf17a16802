"""ecosync sync."""
