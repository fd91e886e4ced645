"""A numpy substrafl algorithm: federated estimation of the mean row, what FedAvg needs and no more.

The model is a vector ``w`` (one value per column). A local training step moves ``w`` towards the
mean of the local rows by ``learning_rate`` and shares the move (``parameters_update``) with the
number of rows; FedAvg averages the moves weighted by those counts and every organization adds the
average to its ``w`` at the next round (as substrafl's TorchFedAvgAlgo does with its weights). The
SDK test and the FedAvg benchmark pickle this module by value, as substrafl ships a user's
``__main__`` script: the tasks never import it from the repository.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from substrafl.algorithms.algo import Algo
from substrafl.remote.decorators import remote_data
from substrafl.strategies.schemas import FedAvgAveragedState, FedAvgSharedState, StrategyName


class MeanAlgo(Algo):
    """FedAvg-compatible mean estimation on the rows the opener returns (an ``(n, dimension)`` array)."""

    def __init__(self, dimension: int = 3, learning_rate: float = 0.5):
        super().__init__(dimension=dimension, learning_rate=learning_rate)
        self._weights = np.zeros(dimension)
        self._learning_rate = learning_rate

    @property
    def model(self) -> np.ndarray:
        return self._weights

    @property
    def strategies(self) -> list[StrategyName]:
        return [StrategyName.FEDERATED_AVERAGING]

    @remote_data
    def train(self, data_from_opener: np.ndarray, shared_state: FedAvgAveragedState | None = None) -> FedAvgSharedState:
        if shared_state is not None:
            self._weights = self._weights + shared_state.avg_parameters_update[0]
        update = self._learning_rate * (data_from_opener.mean(axis=0) - self._weights)
        print(f"training on {len(data_from_opener)} rows, weights {self._weights.tolist()}")
        return FedAvgSharedState(n_samples=len(data_from_opener), parameters_update=[update])

    def predict(self, data_from_opener: np.ndarray, shared_state=None) -> np.ndarray:
        return np.broadcast_to(self._weights, data_from_opener.shape)

    def save_local_state(self, path: Path) -> None:
        with open(path, "wb") as out:
            np.save(out, self._weights)

    def load_local_state(self, path: Path) -> MeanAlgo:
        with open(path, "rb") as src:
            self._weights = np.load(src)
        return self


def fit(data_from_opener: np.ndarray, predictions: np.ndarray) -> float:
    """``1 / (1 + mean squared error)`` of the predicted rows: 1 when the model is the data."""
    return float(1.0 / (1.0 + np.square(data_from_opener - predictions).mean()))
