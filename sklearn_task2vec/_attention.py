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
        # Internally (batch, length, embed): the projections, like every filter layer, take the
        # examples along the first axis.
        unbatched = query.dim() == 2
        if unbatched:
            query, key, value = query.unsqueeze(0), key.unsqueeze(0), value.unsqueeze(0)
            if key_padding_mask is not None:
                key_padding_mask = key_padding_mask.unsqueeze(0)
        elif not self.batch_first:
            query, key, value = query.transpose(0, 1), key.transpose(0, 1), value.transpose(0, 1)
        batch, target, source = query.shape[0], query.shape[1], key.shape[1]
        q = self._heads(self.q_proj(query))
        k = self._heads(self.k_proj(key))
        v = self._heads(self.v_proj(value))
        scores = q @ k.transpose(-2, -1) / math.sqrt(self.head_dim)
        scores = scores + self._additive_mask(attn_mask, key_padding_mask, batch, target, source, scores)
        weights = F.dropout(torch.softmax(scores, dim=-1), p=self.dropout, training=self.training)
        output = self.out_proj((weights @ v).transpose(1, 2).reshape(batch, target, self.embed_dim))
        if unbatched:
            output = output.squeeze(0)
        elif not self.batch_first:
            output = output.transpose(0, 1)
        if not need_weights:
            return output, None
        if average_attn_weights:
            weights = weights.mean(dim=1)
        return output, (weights.squeeze(0) if unbatched else weights)

    def _heads(self, projected):
        """(batch, length, embed) -> (batch, heads, length, head_dim)."""
        batch, length, _ = projected.shape
        return projected.reshape(batch, length, self.num_heads, self.head_dim).transpose(1, 2)

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
    """Replace, in place, every attention module of ``probe`` that applies its projections
    functionally by one computing the same function with them called as modules:
    ``nn.MultiheadAttention`` (:class:`ProjectedMultiheadAttention`) and torchvision's Swin
    ``ShiftedWindowAttention`` (:class:`ProjectedWindowAttention`; its V2 is refused).
    Returns ``probe``."""
    window_attention = _torchvision_window_attention()
    replacements = []
    for path, module in probe.named_modules():
        if isinstance(module, nn.MultiheadAttention):
            replacements.append((path, ProjectedMultiheadAttention(module, path)))
        elif window_attention is not None and isinstance(module, window_attention):
            if type(module) is not window_attention:
                raise ValueError(
                    f"Probe layer {path!r} is a {type(module).__name__}: its attention is "
                    f"computed from weights read outside their modules, which the per-filter "
                    f"Fisher does not support (Swin V1's ShiftedWindowAttention is supported)."
                )
            replacements.append((path, ProjectedWindowAttention(module)))
    for path, replacement in replacements:
        parent_path, _, name = path.rpartition(".")
        parent = probe.get_submodule(parent_path) if parent_path else probe
        setattr(parent, name, replacement)
    return probe


def _torchvision_window_attention():
    try:
        from torchvision.models.swin_transformer import ShiftedWindowAttention
    except ImportError:
        return None
    return ShiftedWindowAttention


class ProjectedWindowAttention(nn.Module):
    """The function of torchvision's Swin ``ShiftedWindowAttention``, its projections called
    as Linear modules on inputs whose first axis is the batch.

    Shifted-window self-attention (Liu et al., 2021, sec. 3.2, eq. 4): the feature map is
    padded to whole windows, cyclically shifted, and each window attends within itself with a
    learned relative position bias, neighbouring regions masked after the shift. torchvision
    applies ``qkv`` and ``proj`` functionally to ``(batch * windows, tokens, C)``; both are
    position-wise, so here ``qkv`` runs on the padded, shifted map ``(batch, H, W, C)`` before
    it is cut into windows and ``proj`` on the map after the windows are put back: the same
    numbers, with each example's filter gradients in its own rows.

    Parameters
    ----------
    source : torchvision.models.swin_transformer.ShiftedWindowAttention
        Its modules and parameters are taken over, not copied.
    """

    def __init__(self, source):
        super().__init__()
        self.window_size = list(source.window_size)
        self.shift_size = list(source.shift_size)
        self.num_heads = source.num_heads
        self.attention_dropout, self.dropout = source.attention_dropout, source.dropout
        self.qkv, self.proj = source.qkv, source.proj
        self.relative_position_bias_table = source.relative_position_bias_table
        self.register_buffer("relative_position_index", source.relative_position_index)
        self.train(source.training)

    def forward(self, x):
        batch, height, width, channels = x.shape
        window_h, window_w = self.window_size
        x = F.pad(
            x,
            (0, 0, 0, (window_w - width % window_w) % window_w, 0, (window_h - height % window_h) % window_h),
        )
        padded_h, padded_w = x.shape[1], x.shape[2]
        # No shift along an axis that one window covers (as torchvision).
        shift = [
            0 if window_h >= padded_h else self.shift_size[0],
            0 if window_w >= padded_w else self.shift_size[1],
        ]
        if sum(shift) > 0:
            x = torch.roll(x, shifts=(-shift[0], -shift[1]), dims=(1, 2))
        rows, cols = padded_h // window_h, padded_w // window_w
        tokens, head_dim = window_h * window_w, channels // self.num_heads
        qkv = self._windows(self.qkv(x), rows, cols)  # (batch * windows, tokens, 3C)
        qkv = qkv.reshape(-1, tokens, 3, self.num_heads, head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0] * head_dim**-0.5, qkv[1], qkv[2]
        attention = q @ k.transpose(-2, -1) + self._relative_position_bias(tokens)
        if sum(shift) > 0:
            mask = self._shift_mask(padded_h, padded_w, shift, attention)
            attention = attention.view(batch, rows * cols, self.num_heads, tokens, tokens) + mask
            attention = attention.view(-1, self.num_heads, tokens, tokens)
        attention = F.dropout(
            torch.softmax(attention, dim=-1), p=self.attention_dropout, training=self.training
        )
        context = (attention @ v).transpose(1, 2).reshape(-1, tokens, channels)
        context = context.view(batch, rows, cols, window_h, window_w, channels)
        x = self.proj(context.permute(0, 1, 3, 2, 4, 5).reshape(batch, padded_h, padded_w, channels))
        x = F.dropout(x, p=self.dropout, training=self.training)
        if sum(shift) > 0:
            x = torch.roll(x, shifts=(shift[0], shift[1]), dims=(1, 2))
        return x[:, :height, :width, :].contiguous()

    def _windows(self, x, rows, cols):
        """(batch, H, W, D) -> (batch * windows, tokens, D), windows in row-major order."""
        window_h, window_w = self.window_size
        x = x.view(x.shape[0], rows, window_h, cols, window_w, x.shape[-1])
        return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, window_h * window_w, x.shape[-1])

    def _relative_position_bias(self, tokens):
        bias = self.relative_position_bias_table[self.relative_position_index]
        return bias.view(tokens, tokens, -1).permute(2, 0, 1).unsqueeze(0)

    def _shift_mask(self, padded_h, padded_w, shift, like):
        """-100 between tokens of a window that come from different regions of the shifted map,
        shape (1, windows, 1, tokens, tokens)."""
        window_h, window_w = self.window_size
        regions = torch.zeros((padded_h, padded_w), device=like.device)
        h_slices = (slice(0, -window_h), slice(-window_h, -shift[0]), slice(-shift[0], None))
        w_slices = (slice(0, -window_w), slice(-window_w, -shift[1]), slice(-shift[1], None))
        for index, (h, w) in enumerate((h, w) for h in h_slices for w in w_slices):
            regions[h, w] = index
        labels = self._windows(
            regions.view(1, padded_h, padded_w, 1), padded_h // window_h, padded_w // window_w
        )
        labels = labels.squeeze(-1)
        mask = torch.zeros(
            labels.shape[0], labels.shape[1], labels.shape[1], dtype=like.dtype, device=like.device
        )
        mask = mask.masked_fill(labels.unsqueeze(1) != labels.unsqueeze(2), -100.0)
        return mask.unsqueeze(1).unsqueeze(0)
