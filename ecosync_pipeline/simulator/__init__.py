"""ecosync simulator."""
