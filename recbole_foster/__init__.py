"""recbole_foster: FOSTER dataset distillation for text-based sequential recommendation, as a RecBole plugin."""

from recbole_foster import compat

compat.apply()

from recbole_foster.config import FosterConfig, get_model, get_trainer  # noqa: E402

__version__ = "0.1.0"
__all__ = ["FosterConfig", "get_model", "get_trainer"]
