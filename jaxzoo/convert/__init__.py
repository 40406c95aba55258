"""torchvision <-> jaxzoo weights, the export of trained models, and the parity check."""
from jaxzoo.convert.export import export_workdir
from jaxzoo.convert.torchvision import (LoadReport, from_torch, load_state_dict, load_torch,
                                        num_classes_of, save_torch, to_torch, torch_key)

__all__ = ["LoadReport", "export_workdir", "from_torch", "load_state_dict", "load_torch",
           "num_classes_of", "save_torch", "to_torch", "torch_key"]
