"""Import-time deferrals for third-party packages dermcode never uses.

medspaCy imports QuickUMLS at import time (``from quickumls import spacy_component``,
for its optional UMLS linker), which pulls in nltk and scipy: about a second and
~190 MB per process, for a component dermcode never uses. Before anything imports
medspaCy, ``quickumls`` is registered as a package whose ``__init__`` runs only when
one of its attributes is first used, and whose ``spacy_component`` submodule is
loaded lazily; code that really uses QuickUMLS still gets all of it.
"""

import importlib
import importlib.machinery
import importlib.util
import sys
import types


def _stub(spec: importlib.machinery.ModuleSpec, is_package: bool) -> types.ModuleType:
    """A module object that runs its real code on first use of an unknown attribute."""
    mod = types.ModuleType(spec.name)
    mod.__spec__ = spec
    mod.__file__ = spec.origin
    mod.__loader__ = spec.loader
    mod.__package__ = spec.name if is_package else spec.name.rpartition(".")[0]
    if is_package:
        mod.__path__ = list(spec.submodule_search_locations or [])

    def _load(name: str) -> object:
        if is_package and importlib.machinery.PathFinder.find_spec(
            f"{spec.name}.{name}", mod.__path__
        ):
            # "from . import toolbox" inside the package: a submodule, not the package body
            return importlib.import_module(f"{spec.name}.{name}")
        if "__getattr__" in mod.__dict__:
            del mod.__getattr__  # type: ignore[attr-defined]
            spec.loader.exec_module(mod)  # type: ignore[union-attr]
        return mod.__dict__[name] if name in mod.__dict__ else getattr(mod, name)

    mod.__getattr__ = _load  # type: ignore[attr-defined]
    return mod


def defer_quickumls() -> None:
    if "quickumls" in sys.modules:
        return
    spec = importlib.util.find_spec("quickumls")
    if spec is None or spec.loader is None or not spec.submodule_search_locations:
        return
    package = _stub(spec, is_package=True)
    sys.modules["quickumls"] = package
    sub_spec = importlib.machinery.PathFinder.find_spec(
        "quickumls.spacy_component", package.__path__
    )
    if sub_spec is not None and sub_spec.loader is not None:
        sub = _stub(sub_spec, is_package=False)
        sys.modules["quickumls.spacy_component"] = sub
        package.spacy_component = sub  # type: ignore[attr-defined]
