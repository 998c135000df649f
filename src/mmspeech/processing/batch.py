"""The dict-with-attributes that front ends return."""

from __future__ import annotations

from typing import Any

import torch


class BatchFeature(dict[str, Any]):
    """Model inputs: a dict (so ``model(**inputs)`` works) with attribute access.

    From the feature extractor: ``input_values`` — ``(batch, samples)`` float32 and, when
    requested, ``attention_mask`` — ``(batch, samples)`` int32, 1 on valid samples. From the
    tokenizer: ``input_ids`` and ``attention_mask``. Tensors or arrays as ``return_tensors`` asks.
    """

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def to(self, *args: Any, **kwargs: Any) -> BatchFeature:
        """Apply ``Tensor.to(*args, **kwargs)`` to floating tensors; only move the others.

        So ``inputs.to("cuda", torch.float16)`` casts ``input_values`` but keeps the mask integer.
        """
        device = kwargs.get("device")
        if device is None and args and not isinstance(args[0], torch.dtype):
            device = args[0]
        for key, value in self.items():
            if isinstance(value, torch.Tensor):
                if value.is_floating_point():
                    self[key] = value.to(*args, **kwargs)
                elif device is not None:
                    self[key] = value.to(device=device)
        return self
