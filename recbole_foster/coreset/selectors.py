"""``--method=kcenter|dealrec|goracs``: the coreset algorithms applied to a run's data.

Candidates are every training user's training window (the sequences Random-N draws from); the
signals come from the real-data model (the Full run, also FOSTER's teacher), so every selector
sees the same model. Each selector returns row indices into the candidates.
"""

import torch

from recbole_foster.coreset.dealrec import dealrec_select
from recbole_foster.coreset.goracs import goracs_cost, goracs_select
from recbole_foster.coreset.kcenter import greedy_k_center
from recbole_foster.model import students
from recbole_foster.coreset.signals import influence_scores, last_hidden_states, per_sample_grad_norms


def validation_histories(ctx):
    """The validation users' histories (item ids, right-padded), as RecBole built them."""
    dataset = ctx.valid_data.dataset
    return dataset.inter_feat[dataset.config["ITEM_ID_FIELD"] + dataset.config["LIST_SUFFIX"]]


def select_kcenter(ctx, teacher, sequences, n):
    """Greedy k-center over each user's last-position hidden state of the real-data model."""
    return greedy_k_center(last_hidden_states(teacher, sequences), n, ctx.selection_seed)


def select_dealrec(ctx, teacher, sequences, n):
    """DEALRec: influence on the surrogate (real-data model) + effort of the target model.

    The target model is the model a coreset is judged with, freshly initialised (evaluation
    starts from there), so its gradient norm measures how much a sample would move it.
    """
    config = ctx.config
    influence = influence_scores(teacher, sequences, influence_parameters(teacher), depth=config["coreset_lissa_depth"],
                                 damping=config["coreset_lissa_damping"], scale=config["coreset_lissa_scale"],
                                 seed=config["seed"])
    effort = per_sample_grad_norms(ctx.new_model(config["seed"]), sequences)
    return dealrec_select(influence, effort, n, effort_weight=config["coreset_dealrec_effort_weight"],
                          prune_ratio=config["coreset_dealrec_prune_ratio"],
                          n_strata=config["coreset_dealrec_strata"], seed=ctx.selection_seed)


def influence_parameters(model):
    """As DEALRec: influence is taken over one weight matrix near the output of the encoder."""
    kind = students.family(model)
    if kind == "SASRec":
        return [f"trm_encoder.layer.{model.n_layers - 1}.multi_head_attention.dense.weight"]
    if kind == "GRU4Rec":
        return ["dense.weight"]
    if kind == "NARM":
        return ["b.weight"]
    raise students.UnsupportedModel(f"DEALRec's influence is not defined here for {type(model).__name__}.")


def select_goracs(ctx, teacher, sequences, n):
    """GORACS: OT distance to the validation users in the real-data model's representation space."""
    config = ctx.config
    train_emb = last_hidden_states(teacher, sequences)
    valid_emb = last_hidden_states(teacher, validation_histories(ctx))
    grad_norm = per_sample_grad_norms(teacher, sequences)
    cost = goracs_cost(train_emb, valid_emb, grad_norm, config["coreset_goracs_lambda"],
                       valid_subsample=config["coreset_valid_subsample"], seed=config["seed"])
    return goracs_select(cost, n, max_swaps=config["coreset_goracs_max_swaps"])


SELECTORS = {"kcenter": select_kcenter, "dealrec": select_dealrec, "goracs": select_goracs}
LABELS = {"kcenter": "K-Center", "dealrec": "DEALRec", "goracs": "GORACS"}


def select(ctx, method, teacher, sequences, n):
    if n > len(sequences):
        raise ValueError(f"--n_sequences={n} but the training split has only {len(sequences)} users.")
    chosen = SELECTORS[method](ctx, teacher, sequences, n)
    chosen = torch.as_tensor(chosen, dtype=torch.long)
    if len(chosen) != n or len(torch.unique(chosen)) != n:
        raise RuntimeError(f"{method} selected {len(torch.unique(chosen))} distinct sequences, not {n}.")
    return chosen
