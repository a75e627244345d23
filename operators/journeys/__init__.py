"""Journeys: the registry of journey files, the engine that runs customers through them
(``runner``), and their sends (``delivery``). See ``runner`` for the model."""

from operators.journeys.evaluate import bucket, condition
from operators.journeys.registry import (
    ALWAYS_ON,
    JourneyLoadError,
    JourneyRegistry,
    always_on_journey,
    journey_registry,
    priority_key,
)
from operators.journeys.runner import JourneyEngine

__all__ = ["ALWAYS_ON", "JourneyEngine", "JourneyLoadError", "JourneyRegistry",
           "always_on_journey", "bucket", "condition", "journey_registry", "priority_key"]
