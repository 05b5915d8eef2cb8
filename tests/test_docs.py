"""The user docs: a short README whose install/test commands are CI's, no work history, working links."""

import glob
import os
import re

from recbole_foster.methods import METHODS

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
USER_DOCS = ["README.md"] + sorted(os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, "docs", "*.md")))
# dates, issue/PR numbers and session talk belong in the history, not in user documentation
HISTORY = re.compile(r"\b20\d\d-\d\d-\d\d\b|\b(issue|PR|pull request)s? #?\d+|(?<![\w/])#\d+\b|\bsessions?\b",
                     re.I)


def read(rel):
    with open(os.path.join(ROOT, rel), encoding="utf-8") as f:
        return f.read()


def slug(heading):
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(markdown):
    seen, out = {}, set()
    for heading in re.findall(r"^#{1,6} (.+)$", re.sub(r"```.*?```", "", markdown, flags=re.S), re.M):
        base = slug(heading)
        n = seen.get(base, 0)
        out.add(base if n == 0 else f"{base}-{n}")
        seen[base] = n + 1
    return out


def test_the_readme_is_at_most_12_kb():
    assert os.path.getsize(os.path.join(ROOT, "README.md")) <= 12_000


def test_the_readme_install_and_test_commands_are_the_ones_ci_runs():
    section = read("README.md").split("## Install and test", 1)[1]
    readme_commands = re.search(r"```bash\n(.*?)```", section, re.S).group(1).strip().splitlines()
    ci = [line.strip() for line in read(".ci/run").splitlines()
          if line.strip() and not line.startswith(("#", "set ", "cd "))]
    assert readme_commands == ci


def test_user_docs_carry_no_dates_issue_numbers_or_session_history():
    found = [f"{rel}: {m.group(0)!r}" for rel in USER_DOCS for m in HISTORY.finditer(read(rel))]
    assert not found, found


def test_the_history_pattern_catches_what_it_should():
    for text in ["made on 2026-11-24", "issue #15", "issue 17", "see #4", "this session"]:
        assert HISTORY.search(text), text
    for text in ["[link](#your-own-data)", "top-10 labels", "seed 2021"]:
        assert not HISTORY.search(text), text


def test_relative_links_in_user_docs_resolve_to_files_and_headings():
    broken = []
    for rel in USER_DOCS + ["BENCHMARKS.md"]:
        text = re.sub(r"```.*?```", "", read(rel), flags=re.S)
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+:", target):
                continue
            path, _, anchor = target.partition("#")
            file = os.path.normpath(os.path.join(ROOT, os.path.dirname(rel), path)) if path else \
                os.path.join(ROOT, rel)
            if not os.path.exists(file):
                broken.append(f"{rel}: {target}")
            elif anchor and file.endswith(".md") and anchor not in anchors(open(file, encoding="utf-8").read()):
                broken.append(f"{rel}: {target} (no such heading)")
    assert not broken, broken


def test_the_reference_lists_every_method_of_the_registry_and_no_other():
    listed = re.search(r"`--method` \(([^)]*)\)", read("docs/reference.md"), re.S).group(1)
    ours = {name for name, method in METHODS.items() if type(method).__module__.startswith("recbole_foster.")}
    assert set(re.findall(r"`(\w+)`", listed)) == ours  # outside methods a test registered are not ours
