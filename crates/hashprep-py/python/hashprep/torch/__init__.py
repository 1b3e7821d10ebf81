"""PyTorch side of hashprep (pure Python; torch is imported here and is not a dependency of the
package).

- `HashprepDataset`: the loader as a `torch.utils.data.IterableDataset` of dicts of tensors.
- `HashMoE`: the Hash layer's K expert FFNs driven by a loader route, on one device or sharded
  over an expert-parallel group whose all-to-all split sizes come from the host
  (`Route.peer_counts`): no count exchange, no device-to-host copy.
- `SwitchMoE`, `BaseMoE`: Switch / Token-Switch and BASE layers, routed on the device (count
  exchange under expert parallelism), for comparison.
- `LanguageModel`: hashtrain's decoder (same parameter names, so its `model.safetensors` loads).
- `python -m hashprep.torch.train`: the reference trainer on torch.distributed (torchrun; DDP or
  FSDP2, expert parallel); `python -m hashprep.torch.eval`: the counterpart of `hashtrain eval`.
"""

from .data import HashprepDataset
from .moe import DeviceRoute, HashMoE, device_route
from .model import LanguageModel, RoutedLayer, masked_nll
from .routers import BaseMoE, SwitchMoE

__all__ = ["BaseMoE", "DeviceRoute", "HashMoE", "HashprepDataset", "LanguageModel", "RoutedLayer", "SwitchMoE",
           "device_route", "masked_nll"]
