"""Each training user's training window: the pool that Random-N and the coresets choose from."""

import torch

from recbole_foster.errors import DatasetError


def user_training_sequences(dataset, max_len):
    """``(user ids, (users, max_len) item ids)``: each training user's longest training sequence
    (prefix + next item), its last ``max_len`` items, right-padded with 0."""
    feat = dataset.inter_feat
    uid = feat[dataset.uid_field]
    seq, seq_len, target = feat[dataset.config["ITEM_ID_FIELD"] + dataset.config["LIST_SUFFIX"]], \
        feat[dataset.config["ITEM_LIST_LENGTH_FIELD"]], feat[dataset.iid_field]
    longest = {}
    for row, (u, n) in enumerate(zip(uid.tolist(), seq_len.tolist())):
        if u not in longest or n > seq_len[longest[u]]:
            longest[u] = row
    users = sorted(longest)
    sequences = torch.zeros(len(users), max_len, dtype=torch.long)
    for i, u in enumerate(users):
        row = longest[u]
        items = seq[row, : seq_len[row]].tolist() + [int(target[row])]
        items = items[-max_len:]
        sequences[i, : len(items)] = torch.tensor(items)
    return torch.tensor(users), sequences


def draw_users(users, sequences, n, seed):
    """``n`` of the candidate users (and their windows), uniformly at random with ``seed``."""
    if n > len(users):
        raise DatasetError(f"--n_sequences={n} but the training split has only {len(users)} users; choose at most {len(users)}.")
    chosen = torch.randperm(len(users), generator=torch.Generator().manual_seed(seed))[:n]
    return users[chosen], sequences[chosen]
