"""Data sets and mini-batch loading: ``Dataset``, ``TensorDataset``, ``DataLoader``, ``random_split``,
MNIST-format readers (``fashion_mnist``, ``mnist``), scikit-learn's ``digits`` and the course's
toy sets (``playground``, ``cosine``)."""
from .dataset import Dataset, Subset, TensorDataset, random_split
from .digits import digits
from .idx import fashion_mnist, mnist, read_idx, write_idx
from .loader import DataLoader
from .toy import PLAYGROUND_NAMES, cosine, playground

__all__ = ["Dataset", "TensorDataset", "Subset", "random_split", "DataLoader", "fashion_mnist", "mnist",
           "digits", "read_idx", "write_idx", "playground", "cosine", "PLAYGROUND_NAMES"]
