"""The per-query MLP used by the implicit decoders."""
import torch
import torch.nn as nn

from ..registry import register


@register("mlp")
class MLP(nn.Module):
    """Linear/ReLU stack; ``layers`` is one Sequential, so weights are ``layers.{2i}.weight``."""

    def __init__(self, in_dim: int, out_dim: int, hidden_list):
        super().__init__()
        dims = [in_dim, *hidden_list]
        layers = []
        for a, b in zip(dims[:-1], dims[1:]):
            layers += [nn.Linear(a, b), nn.ReLU()]
        layers.append(nn.Linear(dims[-1], out_dim))
        self.layers = nn.Sequential(*layers)
        self.in_dim, self.out_dim = in_dim, out_dim

    def forward(self, x, start: int = 0):
        """Apply ``layers[start:]``; at inference, ReLUs work in place and biases fuse into addmm."""
        shape = x.shape[:-1]
        h = x.reshape(-1, x.shape[-1])
        if torch.is_grad_enabled():
            return self.layers[start:](h).view(*shape, -1)
        owned = False  # never modify the caller's tensor
        for layer in self.layers[start:]:
            if isinstance(layer, nn.ReLU):
                h = h.relu_() if owned else h.relu()
            else:
                h = torch.addmm(layer.bias, h, layer.weight.t())
            owned = True
        return h.view(*shape, -1)
