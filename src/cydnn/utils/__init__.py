"""Small utilities: the progress bar and seeding."""
from ..backend import set_random_seed
from .progbar import Progbar
