"""Network builders, one module per family, each registered with `@architecture(name, engine=...)`
(`cellbridge.engines.registry`): the U-Nets, Faster R-CNN detectors, Mask R-CNN and the weightless classical one."""

TRAINABLE_PARTS = ("all", "decoder", "head")  # what `train --trainable` can let learn in a U-Net (`UNet.train_only`)
