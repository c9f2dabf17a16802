"""The lab: the EcoManager simulator, the benchmarks and the demo.

None of it is the product. Nothing outside ``lab/`` imports it (an import-linter
contract); its commands join ``ecosync`` through the ``ecosync.commands`` entry point,
so the product's CLI finds them without importing them.
"""
