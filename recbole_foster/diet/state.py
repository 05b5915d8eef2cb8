"""Per-stage state on disk, so that a killed DIET run continues from its last finished stage.

After stage s the run writes ``output_dir/stages/<s>/`` with ``state.pt`` (the memory, the
reservoir and every model's state dict: plain tensors, read with ``weights_only=True``) and
``result.json`` (the stage's numbers). The folder is written under a temporary name and renamed
into place, so a stage folder is either complete or absent. A rerun with the same output folder
and the same config reads the finished stages and continues after the last one; a stage written
with another config is refused (``fingerprint``).
"""

import hashlib
import json
import os
import shutil

import torch

from recbole_foster.cli import CLIError
from recbole_foster.real_run import pool_key

# Keys that do not change what a stage computes (where it is written, when the run stops).
NOT_IN_FINGERPRINT = ("diet_stop_after",)


def fingerprint(config, text_encoder):
    """Hash of what a stage's result depends on: the real-data training config (data, split, model,
    seed: :func:`recbole_foster.real_run.pool_key`) and every DIET, small-set and label setting."""
    relevant = {k: v for k, v in config.final_config_dict.items()
                if k.startswith(("diet_", "distilled_", "label_")) and k not in NOT_IN_FINGERPRINT}
    relevant["real_run"] = pool_key(config, text_encoder)
    return hashlib.sha256(json.dumps(relevant, sort_keys=True, default=str).encode()).hexdigest()[:16]


class StageStore:
    def __init__(self, output_dir, key):
        self.folder = os.path.join(output_dir, "stages")
        self.key = key

    def _stage_dir(self, stage):
        return os.path.join(self.folder, str(stage))

    def finished(self):
        """Stages (1-based) with a complete folder, checked to be 1..n without gaps and of this config."""
        if not os.path.isdir(self.folder):
            return []
        stages = sorted(int(name) for name in os.listdir(self.folder) if name.isdigit())
        done = []
        for expected, stage in enumerate(stages, start=1):
            if stage != expected:
                break
            if self.load_result(stage).get("fingerprint") != self.key:
                raise CLIError(
                    f"{self._stage_dir(stage)} was written by a DIET run with another config; continue it "
                    "with that config, or use another --output_dir (or delete its stages/ folder).")
            done.append(stage)
        return done

    def load_result(self, stage):
        with open(os.path.join(self._stage_dir(stage), "result.json")) as f:
            return json.load(f)

    def load_state(self, stage):
        return torch.load(os.path.join(self._stage_dir(stage), "state.pt"), map_location="cpu", weights_only=True)

    def save(self, stage, state, result):
        """Write the stage's folder atomically (temporary folder, then rename)."""
        os.makedirs(self.folder, exist_ok=True)
        tmp = os.path.join(self.folder, f".{stage}.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        os.makedirs(tmp)
        torch.save(state, os.path.join(tmp, "state.pt"))
        with open(os.path.join(tmp, "result.json"), "w") as f:
            json.dump({**result, "fingerprint": self.key}, f, indent=2)
        final = self._stage_dir(stage)
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
