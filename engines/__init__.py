"""facestream's face super-resolution engines.

One interface (`engines.base.Enhancer`): a batch of aligned face crops in, a batch of enhanced
crops out at a declared scale. `build_enhancer` picks the implementation from the config.
"""
