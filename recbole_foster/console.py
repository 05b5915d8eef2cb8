"""A banner between RecBole's log lines: ``== title ====`` and indented lines, on stdout."""

import sys
import textwrap

RULE = 78


def banner(title, *lines):
    """``== title ====`` and indented lines, flushed at once (progress bars interleave)."""
    print(f"\n== {title} " + "=" * max(3, RULE - len(title) - 4))
    for line in lines:
        if line:
            print(textwrap.fill(line, RULE + 20, initial_indent="   ", subsequent_indent="     ",
                                break_long_words=False, break_on_hyphens=False))
    sys.stdout.flush()
