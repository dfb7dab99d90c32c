"""Import-time deferrals for third-party packages dermcode never uses.

medspaCy imports QuickUMLS at import time (``from quickumls import spacy_component``,
for its optional UMLS linker), which pulls in nltk and scipy: about a second and
~190 MB per process, for a component dermcode never uses. Before anything imports
medspaCy, ``quickumls`` is registered as a package whose ``__init__`` runs only when
one of its attributes is first used, and whose ``spacy_component`` submodule is
loaded lazily; code that really uses QuickUMLS still gets all of it.
"""

import importlib.machinery
import importlib.util
import sys
import types


def defer_quickumls() -> None:
    if "quickumls" in sys.modules:
        return
    spec = importlib.util.find_spec("quickumls")
    if spec is None or spec.loader is None or not spec.submodule_search_locations:
        return
    package = types.ModuleType("quickumls")
    package.__spec__ = spec
    package.__path__ = list(spec.submodule_search_locations)
    package.__file__ = spec.origin
    package.__loader__ = spec.loader
    package.__package__ = "quickumls"

    def _load_package(name: str) -> object:
        del package.__getattr__  # type: ignore[attr-defined]
        spec.loader.exec_module(package)  # type: ignore[union-attr]
        return getattr(package, name)

    package.__getattr__ = _load_package  # type: ignore[attr-defined]
    sub_spec = importlib.machinery.PathFinder.find_spec(
        "quickumls.spacy_component", package.__path__
    )
    sys.modules["quickumls"] = package
    if sub_spec is not None and sub_spec.loader is not None:
        sub_spec.loader = importlib.util.LazyLoader(sub_spec.loader)
        sub = importlib.util.module_from_spec(sub_spec)
        sys.modules["quickumls.spacy_component"] = sub
        sub_spec.loader.exec_module(sub)
        package.spacy_component = sub  # type: ignore[attr-defined]

