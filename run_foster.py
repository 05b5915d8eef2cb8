"""Run FOSTER (and baselines) on a RecBole dataset.

    python run_foster.py                                     # ml-100k, embedded in recbole
    python run_foster.py --dataset=amazon-games --data_path=../shared/data
    python run_foster.py --method=full --epochs=50 --config_files=my.yaml
"""

import sys

from recbole_foster.run import main

if __name__ == "__main__":
    sys.exit(main())
