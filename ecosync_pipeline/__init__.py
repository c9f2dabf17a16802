"""ecosync: EcoManager order sync whose positions survive the loss of Redis."""
