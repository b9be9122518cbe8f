"""The model classes and the training loop.

    network.py     Network: compile, fit, evaluate, predict and their per-batch forms; the
                   training step (loss fusion, accumulation, penalties, one fused optimizer
                   kernel over the flat parameter buffer); per-call contexts and the model lock
    sequential.py  Sequential: a stack of layers, each call one context
    functional.py  Input, symbolic tensors, and Model over a graph of layer calls

Layers (cydnn/layers) know nothing of these: a model hands each layer call its CallContext.
"""
