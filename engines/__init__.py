"""facestream's face super-resolution engines.

One interface (`engines.base.Enhancer`): a batch of aligned face crops in, a batch of enhanced
crops out at a declared scale. engines takes plain arguments (scale, variant, backend, paths)
and never imports the application (`streamer`), which builds enhancers from its own config.
"""
