"""``python -m recbole_foster --method=full ...``: the same as ``python run_foster.py ...``."""
from recbole_foster.run import main
raise SystemExit(main())
