"""torchvision <-> jaxzoo weights, and the parity check against PyTorch."""
from jaxzoo.convert.torchvision import (LoadReport, from_torch, load_state_dict, load_torch,
                                        num_classes_of, save_torch, to_torch, torch_key)

__all__ = ["LoadReport", "from_torch", "load_state_dict", "load_torch", "num_classes_of", "save_torch", "to_torch",
           "torch_key"]
