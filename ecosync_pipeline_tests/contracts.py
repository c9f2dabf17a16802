"""Two import-linter contract types the built-in ones do not cover (setup.cfg uses them).

- ``public_api``: no import of a private module (``dagster._core...``) of the listed
  packages. import-linter keeps an external package as one node, so the check reads the
  import lines it recorded.
- ``acyclic``: no circle of imports between the package's modules.
"""

from __future__ import annotations

import re

import grimp
from importlinter import Contract, ContractCheck, fields, output


class PublicApiContract(Contract):
    """Modules under ``source_modules`` (but not ``exempt_modules``) import no private module."""

    type_name = "public_api"

    source_modules = fields.ListField(subfield=fields.StringField())
    exempt_modules = fields.ListField(subfield=fields.StringField(), required=False)
    packages = fields.ListField(subfield=fields.StringField())

    def check(self, graph: grimp.ImportGraph, verbose: bool) -> ContractCheck:
        sources = [str(s) for s in self.source_modules]  # type: ignore[attr-defined]
        exempt = [str(e) for e in (self.exempt_modules or [])]  # type: ignore[attr-defined]
        packages = [str(p) for p in self.packages]  # type: ignore[attr-defined]
        private = re.compile(r"\b(" + "|".join(map(re.escape, packages)) + r")\._")
        found: list[str] = []
        for module in sorted(graph.modules):
            if not _under(module, sources) or _under(module, exempt):
                continue
            for package in packages:
                if package not in graph.modules:
                    continue
                for detail in graph.get_import_details(importer=module, imported=package):
                    if private.search(detail["line_contents"]):
                        found.append(f"{module}:{detail['line_number']}: {detail['line_contents']}")
        return ContractCheck(kept=not found, metadata={"found": found})

    def render_broken_contract(self, check: ContractCheck) -> None:
        for line in check.metadata["found"]:
            output.print_error(f"private module imported: {line}")


class AcyclicContract(Contract):
    """No module of ``package`` imports itself back through other modules."""

    type_name = "acyclic"

    package = fields.StringField()

    def check(self, graph: grimp.ImportGraph, verbose: bool) -> ContractCheck:
        package = str(self.package)  # type: ignore[attr-defined]
        modules = sorted(m for m in graph.modules if _under(m, [package]))
        circles: list[str] = []
        seen: set[frozenset[str]] = set()
        for module in modules:
            for imported in graph.find_modules_directly_imported_by(module):
                if not _under(imported, [package]) or imported == module:
                    continue
                chain = graph.find_shortest_chain(importer=imported, imported=module)
                if chain is None:
                    continue
                circle = frozenset(chain)
                if circle not in seen:
                    seen.add(circle)
                    circles.append(" -> ".join([module, *chain]))
        return ContractCheck(kept=not circles, metadata={"circles": circles})

    def render_broken_contract(self, check: ContractCheck) -> None:
        for circle in check.metadata["circles"]:
            output.print_error(f"import circle: {circle}")


def _under(module: str, roots: list[str]) -> bool:
    return any(module == root or module.startswith(root + ".") for root in roots)
