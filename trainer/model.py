"""The MetricAug classifier (Wu and Lee, Interspeech 2023; the authors' GRU_TFM model).

Linear(F->H) -> 1-layer GRU(H) -> 1 Transformer encoder layer (2 heads, feed-forward H,
GELU, final LayerNorm) -> mean over valid frames -> Linear(H->n_classes).

Padding never leaks into an utterance's logits: the GRU runs on packed sequences, the
attention ignores padded keys, and the pooling averages valid frames only. So an
utterance gets the same logits alone or padded inside a batch of longer ones.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

N_HEADS = 2


class GRUTFM(nn.Module):
    def __init__(self, n_features: int, hidden: int = 16, n_classes: int = 4):
        super().__init__()
        if hidden % N_HEADS != 0:
            raise ValueError(
                f"hidden size must be divisible by the {N_HEADS} attention heads (an even "
                f"number), got {hidden}"
            )
        self.n_features = n_features
        self.hidden = hidden
        self.n_classes = n_classes

        self.proj = nn.Linear(n_features, hidden)
        self.gru = nn.GRU(hidden, hidden, num_layers=1, batch_first=True)
        layer = nn.TransformerEncoderLayer(
            d_model=hidden, nhead=N_HEADS, dim_feedforward=hidden,
            activation="gelu", batch_first=True,
        )
        # enable_nested_tensor=False: with nested tensors PyTorch's eval-mode fast path
        # drops padded positions (returns zeros there) and takes other kernels, so the
        # same utterance would not get identical numerics padded and unpadded.
        self.encoder = nn.TransformerEncoder(
            layer, num_layers=1, norm=nn.LayerNorm(hidden), enable_nested_tensor=False,
        )
        self.head = nn.Linear(hidden, n_classes)

    def forward(self, feats: torch.Tensor, frame_lengths: torch.Tensor) -> torch.Tensor:
        """feats (B, T, F) float, frame_lengths (B,) int (any device) -> logits (B, n_classes)."""
        B, T, _ = feats.shape
        # pack_padded_sequence wants lengths on the CPU, whatever device feats are on.
        lengths_cpu = frame_lengths.detach().to("cpu", torch.int64)
        if lengths_cpu.shape != (B,):
            raise ValueError(f"frame_lengths must have shape ({B},), got {tuple(lengths_cpu.shape)}")
        if B > 0 and (int(lengths_cpu.min()) < 1 or int(lengths_cpu.max()) > T):
            raise ValueError(f"frame_lengths must lie in 1..{T} (the padded length)")
        lengths = lengths_cpu.to(feats.device)

        x = self.proj(feats)
        # Packing makes the GRU stop at each utterance's last valid frame.
        packed = pack_padded_sequence(x, lengths_cpu, batch_first=True, enforce_sorted=False)
        x, _ = self.gru(packed)
        x, _ = pad_packed_sequence(x, batch_first=True, total_length=T)

        pad = torch.arange(T, device=feats.device)[None, :] >= lengths[:, None]  # (B, T), True = padding
        x = self.encoder(x, src_key_padding_mask=pad)

        # Masked mean: padded frames contribute nothing (masked_fill, not a multiply, so
        # even a non-finite value there cannot leak), divide by the true length.
        x = x.masked_fill(pad.unsqueeze(-1), 0.0)
        pooled = x.sum(dim=1) / lengths[:, None].to(x.dtype)
        return self.head(pooled)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
