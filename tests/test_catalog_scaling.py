"""What should not grow with the catalog does not: one distillation step, and what a run holds.

Costs are compared between a 10k and a 1M item catalog built in this one test run: a per-step
cost that depended on the catalog size would differ between the two. Tables are 8 wide so that
1M items stay small (32 MiB a copy).
"""

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from recbole_foster.distill.bome import BomeSolver
from recbole_foster.distill.loop import DistillationLoop
from recbole_foster.distill.synthetic import SyntheticSummary, item_factor_from_text
from recbole_foster.distill.td3 import TD3Solver
from recbole_foster.label_modes import MODES
from recbole_foster.model.text_sasrec import TextSASRec
from recbole_foster.run import prepare
from tests.toy_data import toy_options

SMALL, LARGE = 10_000, 1_000_000
DIM = 8
# Ops that may take a whole catalog table as input: row gathers (cost O(rows gathered)) and views.
GATHERS_AND_VIEWS = {"aten.index.Tensor", "aten.embedding.default", "aten.index_select.default",
                     "aten.detach.default", "aten.alias.default", "aten._to_copy.default"}


@pytest.fixture(scope="module")
def ctx(toy_data_root, tiny_bert_dir, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("catalog_scaling")
    ctx = prepare(toy_options(toy_data_root, tiny_bert_dir, tmp, method="foster"))
    ctx.config["foster_reset"] = ctx.config["foster_start"] = "random"  # no anchor files for a fake catalog
    return ctx


class Catalog:
    def __init__(self, n_items):
        self.n_items = n_items
        self.item_text_embeddings = torch.randn(n_items, DIM, generator=torch.Generator().manual_seed(0))
        self.item_text_embeddings[0] = 0

    def num(self, field):
        return self.n_items


def make_loop(ctx, n_items, solver):
    catalog = Catalog(n_items)
    torch.manual_seed(0)
    model, teacher = TextSASRec(ctx.config, catalog), TextSASRec(ctx.config, catalog)
    summary = SyntheticSummary(item_factor_from_text(catalog.item_text_embeddings), 4, ctx.config["foster_seq_len"], 4, 4)
    return DistillationLoop(ctx.config, model, teacher, summary, ctx.train_data.dataset, None, [], MODES["coupled"],
                            solver)


class StepCost(TorchDispatchMode):
    """Per op: the largest floating tensor created, the floating elements created in all, which
    ops read a tensor with one row per catalog item and which create a tensor with an axis of
    the catalog's length."""

    def __init__(self, n_items):
        super().__init__()
        self.n_items, self.largest, self.created = n_items, 0, 0
        self.catalog_readers, self.catalog_makers = set(), set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        inputs = [a for a in list(args) + list((kwargs or {}).values()) if isinstance(a, torch.Tensor)]
        if any(t.dim() >= 1 and t.size(0) == self.n_items for t in inputs):
            self.catalog_readers.add(str(func))
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else [out]:
            if isinstance(t, torch.Tensor) and self.n_items in t.shape:
                self.catalog_makers.add(str(func))
            if isinstance(t, torch.Tensor) and t.is_floating_point():  # index draws dedupe: sizes vary a little
                self.largest = max(self.largest, t.numel())
                self.created += t.numel()
        return out


def step_cost(ctx, n_items, solver):
    loop = make_loop(ctx, n_items, solver)
    loop.outer_step()  # warm-up, includes the reset at step 0
    torch.manual_seed(1)
    loop.generator.manual_seed(1)  # the same draws (TD3: the same number of skipped steps) at both sizes
    cost = StepCost(n_items)
    with cost:
        loop.outer_step()
    return cost


@pytest.mark.parametrize("solver", [BomeSolver, TD3Solver], ids=["foster", "td3"])
def test_one_step_costs_the_same_at_10k_and_1m_items(ctx, solver):
    small, large = step_cost(ctx, SMALL, solver), step_cost(ctx, LARGE, solver)
    assert small.created == large.created > 0  # the same floating elements created at 10k and 1M items
    assert small.largest == large.largest
    assert not large.catalog_makers  # no tensor has an axis over the catalog
    # a catalog-sized tensor is only ever gathered from (rows of the current subset or batch)
    assert large.catalog_readers <= GATHERS_AND_VIEWS, large.catalog_readers - GATHERS_AND_VIEWS


def catalog_tables(loop, n_items):
    """Distinct storages with one row per item held by the models (learner, teacher, FOSTER's
    inner copy) and the summary."""
    inner = getattr(loop.solver, "inner_model", None)
    modules = [loop.model, loop.teacher, loop.summary] + ([inner] if inner is not None else [])
    tensors = [t for m in modules for t in list(m.buffers()) + list(m.parameters())]
    return {t.untyped_storage().data_ptr() for t in tensors if t.dim() == 2 and t.size(0) == n_items}


def test_what_a_loop_holds_besides_its_catalog_tables_does_not_grow(ctx):
    def held_besides_tables(n_items):
        loop = make_loop(ctx, n_items, BomeSolver)
        inner = loop.solver.inner_model
        modules = [loop.model, loop.teacher, loop.summary, inner]
        tensors = {t.untyped_storage().data_ptr(): t.untyped_storage().nbytes()
                   for m in modules for t in list(m.buffers()) + list(m.parameters())}
        tables = catalog_tables(loop, n_items)
        return sum(size for ptr, size in tensors.items() if ptr not in tables)

    assert held_besides_tables(SMALL) == held_besides_tables(LARGE) > 0


def test_a_foster_loop_holds_at_most_two_catalog_tables(ctx):
    loop = make_loop(ctx, SMALL, BomeSolver)
    assert len(catalog_tables(loop, SMALL)) <= 2  # the raw text table (shared) and the summary's item factor
