"""torchvision <-> jaxzoo weights, torchvision's pretrained weights by name, and the parity check
(exporting a model is ``jaxzoo.export``)."""
from jaxzoo.convert.hub import WeightsHashMismatch, WeightsUnavailable
from jaxzoo.convert.loader import (Loaded, converted_dir, load, network_kwargs, pretrained,
                                   weights_cache_dir)
from jaxzoo.convert.torchvision import (LoadReport, adapt_input_conv, fit_variables, from_torch,
                                        load_state_dict, load_torch, new_head_value,
                                        num_classes_of, save_torch, to_torch, torch_key)
from jaxzoo.convert.catalog import WeightsEntry, list_weights, weights_entry

__all__ = ["LoadReport", "Loaded", "WeightsEntry", "WeightsHashMismatch", "WeightsUnavailable",
           "adapt_input_conv", "converted_dir", "fit_variables", "from_torch",
           "list_weights", "load", "load_state_dict", "load_torch", "network_kwargs", "new_head_value",
           "num_classes_of", "pretrained", "save_torch", "to_torch", "torch_key",
           "weights_cache_dir", "weights_entry"]
