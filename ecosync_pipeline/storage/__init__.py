"""ecosync storage."""
