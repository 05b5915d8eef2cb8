import pytest
import torch

# The suite's tensors are tiny: a second intra-op thread only adds synchronisation, and on a
# loaded 2-core machine each small op can wait milliseconds for it.
torch.set_num_threads(1)

from tests.tiny_bert import make_tiny_bert
from tests.toy_data import make_toy_dataset


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory):
    return make_tiny_bert(str(tmp_path_factory.mktemp("tiny_bert")))


@pytest.fixture(scope="session")
def toy_data_root(tmp_path_factory):
    return make_toy_dataset(str(tmp_path_factory.mktemp("data")))
