"""The built-in character-level DNA language model `tiny-dnalm`: model, Markov baselines, pretraining."""
