"""sklearn-task2vec: TASK2VEC task embeddings (Achille et al., ICCV 2019) as scikit-learn estimators."""

__version__ = "0.1.0"

from .embedder import FisherTaskEmbedder
from .probes import RandomReLUProbe
from .selector import Model2VecSelector

__all__ = ["FisherTaskEmbedder", "Model2VecSelector", "RandomReLUProbe"]
