"""Imports every ``*_loss.py`` here so that what it defines lands in BasicSR's LOSS_REGISTRY."""
from metaf2n_plugin.registration import import_modules

import_modules(__name__, '_loss')
