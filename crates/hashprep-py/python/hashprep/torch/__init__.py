"""PyTorch side of hashprep (pure Python; torch is imported here and is not a dependency of the
package).

- `HashprepDataset`: the loader as a `torch.utils.data.IterableDataset` of dicts of tensors.
- `HashMoE`: the Hash layer's K expert FFNs driven by a loader route, on one device or sharded
  over an expert-parallel group whose all-to-all split sizes come from the host
  (`Route.peer_counts`): no count exchange, no device-to-host copy.
- `LanguageModel`: hashtrain's decoder (same parameter names, so its `model.safetensors` loads).
- `python -m hashprep.torch.train`: the reference trainer on torch.distributed (torchrun).
"""

from .data import HashprepDataset
from .moe import DeviceRoute, HashMoE, device_route
from .model import LanguageModel, masked_nll

__all__ = ["DeviceRoute", "HashMoE", "HashprepDataset", "LanguageModel", "device_route", "masked_nll"]
