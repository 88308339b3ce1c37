"""Engines behind the decoder: one :class:`~multidraft.runners.base.Runner` per model."""
