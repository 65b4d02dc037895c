"""Checks of the model's option groups: an unknown key or a value of the wrong kind is named, with what is known."""
import re
from collections.abc import Mapping

from metaf2n_plugin.errors import OptionError


def option_group(options, group, known, where='the options file'):
    """``options[group]`` as a dict (``{}`` when absent or ``~``), its keys checked against ``known``.

    :class:`~metaf2n_plugin.errors.OptionError` naming ``group`` when it is not a mapping (e.g. ``--force_yml
    adaptation=~`` unquoted, which the shell turns into a path) or holds keys outside ``known`` (the known
    ones listed)."""
    value = group_or_none(options, group, f'a group of options ({", ".join(sorted(known))})', where)
    if value is None:
        return {}
    unknown = sorted(set(value) - set(known))
    if unknown:
        raise OptionError(
            f'{where}: unknown {group} options {unknown}; known: {sorted(known)}',
            option=f'{group}.{unknown[0]}',
            value=value[unknown[0]])
    return dict(value)


def group_or_none(options, group, expected, where='the options file'):
    """``options[group]`` when it is a mapping or ~ (None); else an OptionError naming ``group``, what is
    ``expected`` there, and the shell's ``~``, which is what a path found there most often comes from."""
    value = options.get(group)
    if value is not None and not isinstance(value, Mapping):
        raise OptionError(
            f'{where}: {group} must be {expected} or ~, got {type(value).__name__} {value!r} (with --force_yml, '
            f'quote a ~ from the shell: \'{group}=~\', or the shell gives a home folder)',
            option=group,
            value=value)
    return value


def checked_value(name, value, kinds, condition=None, meaning=''):
    """``value`` when it is one of ``kinds`` (bool never counts as a number) and meets ``condition``; else an
    OptionError naming ``name``, the kind found and, in ``meaning``, what is expected."""
    number = isinstance(value, bool) and bool not in kinds
    if number or not isinstance(value, kinds) or (condition is not None and not condition(value)):
        expected = meaning or ' or '.join('~' if kind is type(None) else kind.__name__ for kind in kinds)
        raise OptionError(f'{name} must be {expected}, got {type(value).__name__} {value!r}', option=name, value=value)
    return value


def checked_regex(name, value, hint):
    """``value`` (a regex or None) when Python can compile it; else an OptionError naming ``name``, the regex
    error and, in ``hint``, what to give."""
    if value is None:
        return value
    try:
        re.compile(value)
    except re.error as error:
        raise OptionError(
            f'{name} {value!r} is not a regular expression ({error}); give {hint}', option=name, value=value) from None
    return value
