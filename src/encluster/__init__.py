"""encluster: find the groups in unlabeled data by clustering the encoding an
autoencoder learns of it."""

__version__ = "0.1.0"

from .data import load_dataset  # noqa: E402
from .dataset import Dataset  # noqa: E402
from .errors import EnclusterError  # noqa: E402
from .estimator import EncodingClusterer  # noqa: E402
from .metrics import score  # noqa: E402

__all__ = ["EncodingClusterer", "load_dataset", "Dataset", "score", "EnclusterError", "__version__"]
