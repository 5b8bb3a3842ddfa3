"""Multi-head attention with its projections as modules, so that their filters can be embedded.

``torch.nn.MultiheadAttention`` keeps the query, key and value projections in one
``in_proj_weight`` and applies it, and ``out_proj``'s weight, functionally inside
``F.multi_head_attention_forward``: no Linear module is ever called, so per-filter hooks see
nothing. :class:`ProjectedMultiheadAttention` computes the same function with four Linear
modules (``q_proj``, ``k_proj``, ``v_proj``, ``out_proj``), and :func:`explicit_attention`
swaps it in for every ``MultiheadAttention`` of a (copied) probe. Each projection's output
units are then filters like any Linear layer's.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class ProjectedMultiheadAttention(nn.Module):
    """The function of a ``torch.nn.MultiheadAttention``, its projections called as Linear modules.

    Built from an existing module (its weights copied); ``forward`` takes the same arguments
    and returns the same ``(output, weights)``. Scaled dot-product attention per head
    (Vaswani et al., 2017, eq. 1): ``softmax(q k^T / sqrt(d_head) + mask) v``.

    Parameters
    ----------
    source : torch.nn.MultiheadAttention
        Without ``add_bias_kv`` or ``add_zero_attn`` (refused with a ``ValueError``).
    path : str
        The module's path in the probe, for error messages.
    """

    # TransformerEncoderLayer and TransformerEncoder read these to decide whether to bypass
    # the attention module with a fused kernel; these values keep them on the module calls.
    in_proj_bias = None
    _qkv_same_embed_dim = False

    def __init__(self, source, path):
        super().__init__()
        if source.bias_k is not None or source.add_zero_attn:
            raise ValueError(
                f"Probe layer {path!r}: MultiheadAttention with add_bias_kv or add_zero_attn is not "
                f"supported (its extra key/value rows are not filters of a projection)."
            )
        self.embed_dim, self.num_heads = source.embed_dim, source.num_heads
        self.head_dim = source.head_dim
        self.batch_first = source.batch_first
        self.dropout = source.dropout
        factory = {"dtype": source.out_proj.weight.dtype, "device": source.out_proj.weight.device}
        has_bias = source.out_proj.bias is not None
        self.q_proj = nn.Linear(self.embed_dim, self.embed_dim, bias=has_bias, **factory)
        self.k_proj = nn.Linear(source.kdim, self.embed_dim, bias=has_bias, **factory)
        self.v_proj = nn.Linear(source.vdim, self.embed_dim, bias=has_bias, **factory)
        self.out_proj = nn.Linear(self.embed_dim, self.embed_dim, bias=has_bias, **factory)
        if source.in_proj_weight is not None:
            weights = source.in_proj_weight.detach().chunk(3)
        else:
            weights = [getattr(source, f"{name}_proj_weight").detach() for name in ("q", "k", "v")]
        biases = source.in_proj_bias.detach().chunk(3) if source.in_proj_bias is not None else (None,) * 3
        with torch.no_grad():
            for projection, weight, bias in zip((self.q_proj, self.k_proj, self.v_proj), weights, biases):
                projection.weight.copy_(weight)
                if bias is not None:
                    projection.bias.copy_(bias)
            self.out_proj.weight.copy_(source.out_proj.weight)
            if has_bias:
                self.out_proj.bias.copy_(source.out_proj.bias)
        self.train(source.training)

    def forward(
        self,
        query,
        key,
        value,
        key_padding_mask=None,
        need_weights=True,
        attn_mask=None,
        average_attn_weights=True,
        is_causal=False,
    ):
        # Internally (length, batch, embed), as torch's own implementation.
        unbatched = query.dim() == 2
        if unbatched:
            query, key, value = query.unsqueeze(1), key.unsqueeze(1), value.unsqueeze(1)
            if key_padding_mask is not None:
                key_padding_mask = key_padding_mask.unsqueeze(0)
        elif self.batch_first:
            query, key, value = query.transpose(0, 1), key.transpose(0, 1), value.transpose(0, 1)
        target, batch, source = query.shape[0], query.shape[1], key.shape[0]
        q = self._heads(self.q_proj(query), target, batch)
        k = self._heads(self.k_proj(key), source, batch)
        v = self._heads(self.v_proj(value), source, batch)
        scores = q @ k.transpose(-2, -1) / math.sqrt(self.head_dim)
        scores = scores + self._additive_mask(attn_mask, key_padding_mask, batch, target, source, scores)
        weights = F.dropout(torch.softmax(scores, dim=-1), p=self.dropout, training=self.training)
        context = (weights @ v).permute(2, 0, 1, 3).reshape(target, batch, self.embed_dim)
        output = self.out_proj(context)
        if unbatched:
            output = output.squeeze(1)
        elif self.batch_first:
            output = output.transpose(0, 1)
        if not need_weights:
            return output, None
        if average_attn_weights:
            weights = weights.mean(dim=1)
        return output, (weights.squeeze(0) if unbatched else weights)

    def _heads(self, projected, length, batch):
        """(length, batch, embed) -> (batch, heads, length, head_dim)."""
        return projected.reshape(length, batch, self.num_heads, self.head_dim).permute(1, 2, 0, 3)

    def _additive_mask(self, attn_mask, key_padding_mask, batch, target, source, scores):
        """The masks as one additive term of shape broadcastable to (batch, heads, target, source);
        boolean masks mark the positions that may not be attended to (``True`` -> ``-inf``)."""
        total = scores.new_zeros(())
        if attn_mask is not None:
            mask = _additive(attn_mask, scores)
            if mask.dim() == 3:
                mask = mask.reshape(batch, self.num_heads, target, source)
            total = total + mask
        if key_padding_mask is not None:
            total = total + _additive(key_padding_mask, scores).reshape(batch, 1, 1, source)
        return total


def _additive(mask, like):
    if mask.dtype == torch.bool:
        return torch.zeros(mask.shape, dtype=like.dtype, device=like.device).masked_fill(mask, float("-inf"))
    return mask.to(like.dtype)


def explicit_attention(probe):
    """Replace, in place, every ``nn.MultiheadAttention`` of ``probe`` by a
    :class:`ProjectedMultiheadAttention` computing the same function. Returns ``probe``."""
    targets = [
        (path, module) for path, module in probe.named_modules() if isinstance(module, nn.MultiheadAttention)
    ]
    for path, module in targets:
        parent_path, _, name = path.rpartition(".")
        parent = probe.get_submodule(parent_path) if parent_path else probe
        setattr(parent, name, ProjectedMultiheadAttention(module, path))
    return probe
