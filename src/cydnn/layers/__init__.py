"""cydnn layers (Keras names). Every layer follows the protocol in base.py."""
from .base import Layer
from .core import Activation, Dense, Dropout, Flatten, InputLayer, Reshape
from .activation_layers import ELU, LeakyReLU, Maxout, PReLU, ReLU, Softmax
