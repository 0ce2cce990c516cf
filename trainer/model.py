"""The MetricAug classifier (Wu and Lee, Interspeech 2023; the authors' GRU_TFM model).

[softmax-weighted sum of L stacked layers, when the front end gives several: the SUPERB
recipe for self-supervised encoders] -> Linear(F->H) -> 1-layer GRU(H) -> 1 Transformer encoder layer (2 heads, feed-forward H,
GELU, final LayerNorm) -> mean over valid frames -> Linear(H->n_classes).

Padding never leaks into an utterance's logits: the GRU is causal (its output at a valid
frame never depends on the padding after it), the attention ignores padded keys, and the
pooling averages valid frames only. So an utterance gets the same logits alone or padded
inside a batch of longer ones. The GRU runs on the padded batch, not on packed sequences:
the fused kernel is about 2x faster forward and backward; it reorders floating-point sums,
so losses differ from the packed computation by about 1e-8 (tested within 1e-4 over 5
epochs, with the same test predictions).

Evaluation (eval mode, no autograd) takes a fused path through the same weights:
``scaled_dot_product_attention`` with the padding as a boolean mask, which on the CPU runs
the flash kernel instead of PyTorch's ``_masked_softmax`` fast path (about 5x faster at 450
frames). It reorders floating-point sums, so logits differ from the stock layer by about
1e-7, and the predictions (argmax) are the same. Training never takes it: the training
step is the stock layer, dropout masks drawn from torch's RNG exactly as before.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

N_HEADS = 2


class GRUTFM(nn.Module):
    #: eval mode without autograd takes the fused attention path (see the module docstring)
    fast_eval = True
    #: run the GRU on packed sequences (the earlier, slower path; kept to check the fast one)
    packed_gru = False

    def __init__(self, n_features: int, hidden: int = 16, n_classes: int = 4, n_layers: int = 1):
        super().__init__()
        if hidden % N_HEADS != 0:
            raise ValueError(
                f"hidden size must be divisible by the {N_HEADS} attention heads (an even "
                f"number), got {hidden}"
            )
        self.n_features = n_features
        self.hidden = hidden
        self.n_classes = n_classes
        self.n_layers = n_layers
        if n_layers > 1:  # input (B, T, n_layers * n_features): one learned weight per layer
            self.layer_weights = nn.Parameter(torch.zeros(n_layers))

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

        if self.n_layers > 1:
            weights = torch.softmax(self.layer_weights, dim=0)
            feats = torch.einsum("btlf,l->btf", feats.view(B, T, self.n_layers, self.n_features), weights)
        x = self.proj(feats)
        if self.packed_gru:
            packed = pack_padded_sequence(x, lengths_cpu, batch_first=True, enforce_sorted=False)
            x, _ = self.gru(packed)
            x, _ = pad_packed_sequence(x, batch_first=True, total_length=T)
        else:
            # The GRU is causal: its output at a valid frame never depends on the padding after
            # it, so it runs on the padded batch (the fused kernel, about 2x faster forward and
            # backward than packed sequences). Its outputs at padded frames, bounded by the
            # gates, are masked below: keys in the attention, frames in the pooling.
            x, _ = self.gru(x)

        pad = torch.arange(T, device=feats.device)[None, :] >= lengths[:, None]  # (B, T), True = padding
        if self.fast_eval and not self.training and not torch.is_grad_enabled():
            x = self._encode_eval(x, pad)
        else:
            x = self.encoder(x, src_key_padding_mask=pad)

        # Masked mean: padded frames contribute nothing (masked_fill, not a multiply, so
        # even a non-finite value there cannot leak), divide by the true length.
        x = x.masked_fill(pad.unsqueeze(-1), 0.0)
        pooled = x.sum(dim=1) / lengths[:, None].to(x.dtype)
        return self.head(pooled)


    def _encode_eval(self, x: torch.Tensor, pad: torch.Tensor) -> torch.Tensor:
        """The encoder (post-norm layer, then the final norm) without dropout, attention by
        ``scaled_dot_product_attention`` over the valid keys only."""
        layer = self.encoder.layers[0]
        attn = layer.self_attn
        B, T, H = x.shape
        qkv = F.linear(x, attn.in_proj_weight, attn.in_proj_bias)  # (B, T, 3H)
        q, k, v = qkv.view(B, T, 3, N_HEADS, H // N_HEADS).permute(2, 0, 3, 1, 4)  # each (B, heads, T, H/heads)
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=~pad[:, None, None, :])
        a = attn.out_proj(a.transpose(1, 2).reshape(B, T, H))
        x = layer.norm1(x + a)
        x = layer.norm2(x + layer.linear2(layer.activation(layer.linear1(x))))
        return self.encoder.norm(x)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
