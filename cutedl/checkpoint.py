"""Moved to :mod:`cutedl.training.checkpoint`; this name stays so existing imports keep working."""
from cutedl.training.checkpoint import (FORMAT, FORMAT_VERSION, WEIGHTS_FORMAT, capture, check_format,
                                        generator_states, history_of, load_state, load_weights, read, restore,
                                        save_state, save_weights, set_generator_states)

__all__ = ["FORMAT", "FORMAT_VERSION", "WEIGHTS_FORMAT", "capture", "check_format", "generator_states",
           "history_of", "load_state", "load_weights", "read", "restore", "save_state", "save_weights",
           "set_generator_states"]
