"""Folder scan that makes BasicSR's registry decorators run for the plugin's modules."""
import importlib
import pkgutil


def import_modules(package, suffix):
    """Import every ``*<suffix>.py`` module of the already imported ``package`` (dotted name, usually ``__name__``),
    e.g. all ``*_arch.py`` of ``archs``; ``suffix`` is one of BasicSR's ``_arch``, ``_dataset``, ``_loss``, ...
    """
    path = importlib.import_module(package).__path__
    for module in sorted(pkgutil.iter_modules(path), key=lambda m: m.name):
        if module.name.endswith(suffix):
            importlib.import_module(f'{package}.{module.name}')
