"""multidraft: lossless multi-draft speculative decoding.

Layers (data flows one way): models -> probabilities -> ``schemes`` -> ``tree``
walk -> tokens and metrics.  ``theory`` holds the exact analysis.
"""

__version__ = "0.1.0"
