"""Imports every ``*_metric.py`` here so that what it defines lands in BasicSR's METRIC_REGISTRY."""
from metaf2n_plugin.registration import import_modules

import_modules(__name__, '_metric')
