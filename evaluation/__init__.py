"""Scores a bundle on labelled photos through the service's own classifier; needs only `models/`
(no Spark, no web framework), so it runs wherever a bundle can be read."""

from evaluation.evaluate import Evaluation, Prediction, evaluate

__all__ = ["Evaluation", "Prediction", "evaluate"]
