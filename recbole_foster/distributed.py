"""Training the real-data run on several processes (GPUs) with RecBole's own DDP.

RecBole 1.2.1 trains data-parallel when a config has ``local_rank``: its dataloaders split each
batch with a ``DistributedSampler`` (``train_batch_size`` is divided by ``world_size``, so the
global batch stays the same), its ``Trainer`` wraps the model in ``DistributedDataParallel`` and
makes every parameter take part in each step's gradient all-reduce (``set_reduce_hook``,
``sync_grad_loss``), and ``evaluate`` averages the ranks' metrics (``_map_reduce``), so every
rank takes the same early-stopping decisions. ``quick_start.run`` starts the processes with
``torch.multiprocessing.spawn``; we do the same here (the plugin never imports
``recbole.quick_start``), for the Full run only: the small-set methods that follow are cheap and
run in the main process on one device.

Keys, as RecBole names them: ``nproc`` (processes on this machine), ``world_size`` (processes on
all machines, default ``nproc``), ``ip``/``port`` (rank 0's address), ``offset`` (rank of this
machine's first process). RecBole's ``Config._init_device`` hard-codes the NCCL backend and CUDA
devices; we set the process group up ourselves with NCCL on CUDA and gloo on CPU (how the tests
run it), with the same rank and address arithmetic.
"""

import logging
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from recbole.data import data_preparation
from recbole.utils import init_seed

from recbole_foster.cli import CLIError
from recbole_foster.trainer import global_rank, is_writer  # noqa: F401 - part of this module's API


TEXT_ATTRIBUTES = ("item_text_embeddings", "text_encoder_used", "text_embedding_key")  # set by run.prepare


def world_size(config):
    """How many processes train the real-data run: ``world_size``, else ``nproc``, else 1."""
    key = "world_size" if config["world_size"] not in (None, -1) else "nproc"
    return _integer(config, key, 1)


def _integer(config, key, default=None):
    value = config[key]
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise CLIError(f"--{key} must be an integer, got {value!r}.")
    return value


def settings(config):
    """The launch settings of this machine, checked: one ``error:`` line for a bad value."""
    size, nproc = world_size(config), _integer(config, "nproc", 1)
    offset = _integer(config, "offset", 0)
    if nproc < 1 or size < nproc or not 0 <= offset <= size - nproc:
        raise CLIError(f"--nproc={nproc}, --world_size={size}, --offset={offset}: need 1 <= nproc <= world_size "
                       "and 0 <= offset <= world_size - nproc (offset: the rank of this machine's first process).")
    cuda = config["device"].type == "cuda"
    if cuda and torch.cuda.device_count() < nproc:
        raise CLIError(f"--nproc={nproc} needs {nproc} visible GPUs, {torch.cuda.device_count()} are visible: "
                       f"list them with --gpu_id, e.g. --gpu_id={','.join(map(str, range(nproc)))}.")
    return {"world_size": size, "nproc": nproc, "offset": offset, "ip": str(config["ip"] or "localhost"),
            "port": str(config["port"] or "5678"), "backend": "nccl" if cuda else "gloo"}


def barrier(config):
    """Wait for every rank (nothing to wait for in a plain run)."""
    if not config["single_spec"]:
        dist.barrier()


def launch(ctx, train, *args):
    """Run ``train(ddp_ctx, *args)`` in ``nproc`` spawned processes. Returns global rank 0's
    ``{"result": what train returned, "timings": its phase seconds, "seconds": ...}`` (None on a
    machine without rank 0). ``train`` must be a module-level function."""
    launch_settings = settings(ctx.config)
    queue = mp.get_context("spawn").SimpleQueue()
    ctx.logger.info(f"Training the real-data run on {launch_settings['nproc']} process(es) of "
                    f"{launch_settings['world_size']} ({launch_settings['backend']})")
    # each rank loads the dataset itself (as RecBole's ranks do); the item text embeddings travel as tensors
    need_item_file = ctx.method.reads_item_text(ctx.config) if ctx.method is not None else True
    text = {name: getattr(ctx.dataset, name) for name in TEXT_ATTRIBUTES if hasattr(ctx.dataset, name)}
    mp.spawn(_worker, args=(ctx.config, need_item_file, text, ctx.text_encoder, launch_settings, queue, train, args),
             nprocs=launch_settings["nproc"], join=True)
    return None if queue.empty() else queue.get()


def _worker(local_rank, config, need_item_file, text, text_encoder, launch_settings, queue, train, args):
    """One rank: what RecBole's ``_init_device`` and ``run_recbole`` do for it, then ``train``."""
    from recbole_foster.context import RunContext
    from recbole_foster.dataset import create_dataset

    rank = local_rank + launch_settings["offset"]
    logging.basicConfig(level=logging.INFO if rank == 0 else logging.ERROR, format="%(asctime)s %(message)s")
    cuda = launch_settings["backend"] == "nccl"
    if cuda:
        torch.cuda.set_device(local_rank)
    dist.init_process_group(backend=launch_settings["backend"], rank=rank, world_size=launch_settings["world_size"],
                            init_method=f"tcp://{launch_settings['ip']}:{launch_settings['port']}")
    try:
        config.final_config_dict.update({
            "local_rank": local_rank, "single_spec": False, "world_size": launch_settings["world_size"],
            "nproc": launch_settings["nproc"], "offset": launch_settings["offset"],
            "device": torch.device("cuda", local_rank) if cuda else torch.device("cpu"),
        })
        if rank != 0:  # as RecBole: only rank 0 talks
            config.final_config_dict.update({"state": "error", "show_progress": False, "verbose": False})
        init_seed(config["seed"] + rank, config["reproducibility"])
        dataset = create_dataset(config, need_item_file=need_item_file)
        train_data, valid_data, test_data = data_preparation(config, dataset)  # DistributedSamplers
        for holder in (dataset, train_data.dataset, valid_data.dataset, test_data.dataset):
            for name, value in text.items():
                setattr(holder, name, value)
        ctx = RunContext(config, dataset, train_data, valid_data, test_data, config["output_dir"], text_encoder)
        start = time.perf_counter()
        result = train(ctx, *args)
        if rank == 0:
            queue.put({"result": result, "timings": ctx.timings, "seconds": time.perf_counter() - start})
        dist.barrier()
    finally:
        dist.destroy_process_group()

