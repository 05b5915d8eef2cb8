"""Peak memory per phase of a run, the same quantity on CPU and CUDA.

CPU: the process's peak resident set (``VmHWM``), which Linux lets a process reset by writing
``5`` to ``/proc/self/clear_refs``, so each phase gets its own peak. CUDA: PyTorch's peak of
allocated device memory, reset per phase. Where the CPU peak cannot be reset (not Linux), each
phase reports the process peak so far and ``resettable`` says so.
"""

import os
import resource

import torch


def _read_hwm_mb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    raise OSError("no VmHWM in /proc/self/status")


def _reset_hwm():
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


class PeakMemory:
    def __init__(self, device):
        self.cuda = torch.device(device).type == "cuda"
        self.device = device
        self.resettable = self.cuda or self._cpu_resettable()
        self.peaks = {}

    @staticmethod
    def _cpu_resettable():
        try:
            _reset_hwm()
            _read_hwm_mb()
            return True
        except OSError:
            return False

    def start(self):
        if self.cuda:
            torch.cuda.reset_peak_memory_stats(self.device)
        elif self.resettable:
            _reset_hwm()

    def read_mb(self):
        """The peak since the last :meth:`start` (see the module docstring)."""
        if self.cuda:
            return torch.cuda.max_memory_allocated(self.device) / 2**20
        if self.resettable:
            return _read_hwm_mb()
        return process_peak_mb()

    def record(self, phase):
        self.peaks[phase] = max(self.peaks.get(phase, 0.0), self.read_mb())


def process_peak_mb():
    """Peak resident set of the whole process so far (MB; Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 if os.name == "posix" else float("nan")
