"""cydnn layers (Keras names). Every layer follows the protocol in base.py."""
from .. import registry
from .base import Layer
from .core import Activation, Dense, Dropout, Flatten, InputLayer, Reshape
from .activation_layers import ELU, LeakyReLU, Maxout, PReLU, ReLU, Softmax
from .convolutional import Conv1D, Conv2D, DepthwiseConv2D, ZeroPadding1D, ZeroPadding2D
from .pooling import (AveragePooling1D, AveragePooling2D, AvgPool1D, AvgPool2D, GlobalAveragePooling1D,
                      GlobalAveragePooling2D, GlobalAvgPool1D, GlobalAvgPool2D, GlobalMaxPool1D, GlobalMaxPool2D,
                      GlobalMaxPooling1D, GlobalMaxPooling2D, MaxPool1D, MaxPool2D, MaxPooling1D, MaxPooling2D)
from .normalization import BatchNormalization, LayerNormalization
from .embedding import Embedding, Masking
from .time_distributed import TimeDistributed
from .attention import AdditiveAttention, Attention, AttentionPooling, SelfAttentionPooling
from .merge import (Add, Average, Concatenate, Dot, Maximum, Minimum, Multiply, Subtract, add, average, concatenate,
                    dot, maximum, minimum, multiply, subtract)
from .recurrent import GRU, LSTM, SimpleRNN
from .wrappers import Bidirectional

# every public layer class (and alias) resolvable by its Keras name, for loading saved models
for _name, _obj in list(globals().items()):
    if isinstance(_obj, type) and issubclass(_obj, Layer):
        registry.add("layer", _name, _obj)
del _name, _obj
