"""The docs list what the one method registry holds."""

import os
import re

from recbole_foster.methods import METHODS

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_the_readme_lists_every_method_of_the_registry_and_no_other():
    with open(os.path.join(ROOT, "README.md")) as f:
        readme = f.read()
    listed = re.search(r"`--method` \(([^)]*)\)", readme, re.S).group(1)
    names = set(re.findall(r"`(\w+)`", listed))
    assert names == set(METHODS)
