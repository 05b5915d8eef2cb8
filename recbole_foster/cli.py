"""Command-line parsing for ``run_foster.py``: ``--key=value`` pairs, RecBole style.

Plugin keys (``--dataset --method --n_sequences --config_files --output_dir --seed`` ...) and any
RecBole config key share one syntax. Values stay strings here; RecBole's Config converts them
(``--epochs=5`` -> 5, ``--text_fields="['title','brand']"`` -> list) exactly as it would for its
own command line.
"""

FLAGS = {"resume"}  # keys that may be given without a value (--resume == --resume=True)


class CLIError(ValueError):
    pass


def parse_args(argv):
    """Turn ``['--dataset=ml-100k', '--epochs=5']`` into ``{'dataset': 'ml-100k', 'epochs': '5'}``."""
    options = {}
    for arg in argv:
        if not arg.startswith("--") or len(arg) <= 2:
            raise CLIError(f"malformed argument {arg!r}: use --key=value, e.g. --dataset=ml-100k or --epochs=10.")
        key, sep, value = arg[2:].partition("=")
        if not sep:
            if key in FLAGS:
                value = "True"
            else:
                raise CLIError(f"malformed argument {arg!r}: missing '=value'; use --{key}=<value>.")
        if not key or not key.replace("_", "").replace("-", "").isalnum():
            raise CLIError(f"malformed argument {arg!r}: '{key}' is not a valid config key; use --key=value.")
        if key in options:
            raise CLIError(f"argument --{key} is given twice ({options[key]!r} and {value!r}); keep one.")
        options[key] = value
    return options
