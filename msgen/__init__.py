"""msgen: multi-source human image generation with attention-based fusion.

Data flows pose -> parts -> warp -> encoder -> fusion -> decoder -> image, and the package follows
it: ``msgen.pose`` (keypoints, heatmaps, body-part affines), ``msgen.data`` (datasets and tuples),
``msgen.ops`` (the fused attention fusion and the part warp, each with its reference),
``msgen.models`` (generator, discriminator, losses), then ``msgen.train``, ``msgen.evaluate`` and
``msgen.generate``.

Importing msgen never needs the compiled extension: ``msgen.ops.backends()`` says what is usable.
"""

__version__ = "0.1.0"
