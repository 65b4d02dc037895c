"""What every command line of the project shares: its ``--help`` is its module docstring."""
import argparse


def parser_from_doc(doc, prog=None):
    """An ``ArgumentParser`` whose description is the first paragraph of ``doc`` and whose epilog is the rest,
    kept as written (examples stay on their lines)."""
    description, _, epilog = doc.strip().partition('\n\n')
    return argparse.ArgumentParser(
        prog=prog, description=description, epilog=epilog or None, formatter_class=argparse.RawDescriptionHelpFormatter)
