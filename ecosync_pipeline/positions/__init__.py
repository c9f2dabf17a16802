"""ecosync positions."""
