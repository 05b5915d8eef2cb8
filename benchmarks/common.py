"""What the benchmark scripts share: their command line, their written tables and their figures.

Every script takes its own options plus any ``--key=value`` for ``run_foster.py``; options are
never abbreviated, so a run option (``--seed``) is never mistaken for a script option
(``--seeds``). Figures are written headless (Agg) at one resolution.
"""

import argparse
import json
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def parser_of(doc, dataset="ml-100k"):
    """An argument parser described by the first line of the script's docstring, with ``--dataset``."""
    parser = argparse.ArgumentParser(description=doc.split("\n")[0], allow_abbrev=False)
    if dataset is not None:
        parser.add_argument("--dataset", default=dataset)
    return parser


def parse(parser, argv):
    """``(args, run_options)``: the script's own options, and every other ``--key=value`` parsed
    exactly as ``run_foster.py`` parses it (anything else: the parser's one-line error, exit 2)."""
    from recbole_foster.cli import CLIError, parse_args

    args, extra = parser.parse_known_args(argv)
    try:
        return args, parse_args(extra)
    except CLIError as error:
        parser.error(str(error))


def command_of(script, argv):
    """The command line that reproduces an output, written beside it."""
    return f"python benchmarks/{script} " + " ".join(argv)


def write_results(folder, name, results, plot=None):
    """``<folder>/<name>.json`` (and, with ``plot(results, png_path)``, its picture); prints its path."""
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, name + ".json")
    with open(path, "w") as f:
        json.dump(results, f, indent=2)
    if plot is not None:
        plot(results, path[:-5] + ".png")
    print(f"results: {path}")
    return path


def write_table(path, command, table):
    """A markdown table headed by the command that made it."""
    with open(path, "w") as f:
        f.write(f"<!-- {command} -->\n{table}\n")


def figure(figsize, ncols=1):
    """``(fig, ax)`` (``ax`` a list when ``ncols`` > 1)."""
    return plt.subplots(1, ncols, figsize=figsize)


def save(fig, path, title=None, legend=None, **savefig):
    """Title (small) and legend on a single-axes figure if given, tight layout, 120 dpi, closed."""
    ax = fig.axes[0]
    if title is not None:
        ax.set_title(title, fontsize=9)
    if legend is not None:
        ax.legend(**legend)
    fig.tight_layout()
    fig.savefig(path, dpi=120, **savefig)
    plt.close(fig)
