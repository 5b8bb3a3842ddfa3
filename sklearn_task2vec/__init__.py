"""sklearn-task2vec: TASK2VEC task embeddings (Achille et al., ICCV 2019) as scikit-learn estimators."""

from .embedder import FisherTaskEmbedder
from .probes import RandomReLUProbe

__all__ = ["FisherTaskEmbedder", "RandomReLUProbe"]
__version__ = "0.1.0"
