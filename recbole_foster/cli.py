"""Command-line parsing for ``run_foster.py``: ``--key=value`` pairs, RecBole style.

Plugin keys (``--dataset --method --n_sequences --config_files --output_dir --seed`` ...) and any
RecBole config key share one syntax. Values stay strings here; RecBole's Config converts them
(``--epochs=5`` -> 5, ``--text_fields="['title','brand']"`` -> list) exactly as it would for its
own command line. Keys are matched exactly: a prefix is never expanded to a longer key.
"""

FLAGS = {"resume", "verbose", "skip_malformed"}  # keys that may be given without a value (--resume == --resume=True)
HELP = {"-h", "--help"}


class CLIError(ValueError):
    pass


class HelpRequested(Exception):
    """``-h``/``--help``: print :func:`usage` and exit 0."""


def parse_args(argv):
    """Turn ``['--dataset=ml-100k', '--epochs=5']`` into ``{'dataset': 'ml-100k', 'epochs': '5'}``."""
    if any(arg in HELP for arg in argv):
        raise HelpRequested()
    options = {}
    for arg in argv:
        if not arg.startswith("--") or len(arg) <= 2:
            raise CLIError(f"malformed argument {arg!r}: use --key=value, e.g. --dataset=ml-100k or --epochs=10 "
                           "(--help lists the options).")
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


def usage(methods):
    """The ``--help`` text; ``methods`` is the registry (:data:`recbole_foster.methods.METHODS`)."""
    width = max(len(name) for name in methods)
    methods = "\n".join(f"  {name:<{width}}  {m.summary}" for name, m in methods.items())
    return f"""usage: python run_foster.py [--key=value ...]

FOSTER dataset distillation for text-based sequential recommendation (a RecBole plugin).
Each run trains on all real data once (cached), builds or reads a small training set, trains
fresh models on it only and reports full-ranking test metrics beside Full and Random-N.

--method=NAME (default foster), or --method=package.module:ClassName for your own (docs/extending.md):
{methods}

main options:
  --dataset=NAME          RecBole dataset name (default ml-100k, shipped with recbole)
  --data_path=DIR         folder that holds <dataset>/<dataset>.inter and .item
  --n_sequences=N         size of the small training set (default 20)
  --model=NAME            TextSASRec (default), TextGRU4Rec, TextNARM, TextBERT4Rec, SASRec, GRU4Rec,
                          NARM, BERT4Rec (any RecBole model for --method=full); which methods take which:
                          docs/transfer.md
  --eval_protocol=P       loo (leave-one-out) | global_temporal (the paper's 8:1:1 time split)
  --seed=S                seed of the real-data run and of the method (default 2020)
  --selection_seed=S      which random users Random-N / Random-KD-N / the warm start draw
  --config_files=a.yaml,b.yaml   your YAML files (plugin defaults < files < command line)
  --output_dir=DIR        where results.json goes (default outputs/<dataset>/<model>/<method>-N/seed<S>)
  --synthetic=PATH        a saved set for --method=eval (synthetic.pt, set.pt or an --export_atomic folder)
  --export_atomic=DIR     also write the set as RecBole atomic files (+ a soft-labels sidecar)
  --resume                continue an interrupted distillation from its checkpoint
  --skip_malformed=True   drop .inter/.item lines with the wrong number of fields (default: stop, naming them)
  --verbose=True          also print RecBole's full config

Your own data: <data_path>/<name>/<name>.inter (user_id:token item_id:token timestamp:float)
and <name>.item (item_id:token plus the text columns you name with --text_fields); the columns
to load come from the files' headers. Every run writes results.json and report.png to its
output folder; `python -m recbole_foster.plot a.json b.json -o runs.png` compares runs.

Any RecBole or plugin config key is accepted as --key=value (e.g. --epochs=5,
--foster_outer_steps=500); an unknown key stops the run and names the closest known one. Plugin keys and defaults: recbole_foster/properties/ and README.md
("Config keys"); RecBole's keys: https://recbole.io/docs/user_guide/config_settings.html

examples:
  python run_foster.py --method=random_kd --n_sequences=20
  python run_foster.py --dataset=amazon-games --data_path=../shared/data
"""
