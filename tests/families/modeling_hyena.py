"""A small HyenaDNA-style model (remote code of a test model folder; written for these tests).

What matters of the family: character tokens, a causal long-convolution operator (each position
sees only itself and earlier bases), no attention mask argument, and hidden states named like the
hub port: (embeddings, after block 1, ..., after block n with the final norm).
"""

import torch
from torch import nn
from transformers import PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import BaseModelOutputWithNoAttention


class HyenaConfig(PretrainedConfig):
    model_type = "hyenadna"

    def __init__(self, vocab_size=12, d_model=16, n_layer=2, d_inner=32, max_seq_len=66, short_filter_order=3,
                 pad_token_id=4, **kwargs):
        self.vocab_size, self.d_model, self.n_layer, self.d_inner = vocab_size, d_model, n_layer, d_inner
        self.max_seq_len, self.short_filter_order = max_seq_len, short_filter_order
        super().__init__(pad_token_id=pad_token_id, **kwargs)


class CausalHyenaOperator(nn.Module):
    """x -> out_proj(v * long_causal_conv(q * k)), q, k, v from a short causal depthwise conv."""

    def __init__(self, d, max_len, short):
        super().__init__()
        self.in_proj = nn.Linear(d, 3 * d)
        self.short = nn.Conv1d(3 * d, 3 * d, short, groups=3 * d, padding=short - 1)
        self.filter = nn.Parameter(torch.randn(d, max_len) * torch.exp(-torch.arange(max_len) / 8.0) / 4)
        self.out_proj = nn.Linear(d, d)

    def forward(self, x):  # x [b, L, d]
        length = x.shape[1]
        u = self.short(self.in_proj(x).transpose(1, 2))[..., :length]  # causal: drop the right overhang
        q, k, v = u.chunk(3, dim=1)
        h = self.filter[:, :length]
        n = 2 * length  # FFT convolution, zero-padded so it stays causal (no wrap-around)
        y = torch.fft.irfft(torch.fft.rfft(q * k, n=n) * torch.fft.rfft(h, n=n), n=n)[..., :length]
        return self.out_proj((v * y).transpose(1, 2))


class HyenaBlock(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(cfg.d_model), nn.LayerNorm(cfg.d_model)
        self.mixer = CausalHyenaOperator(cfg.d_model, cfg.max_seq_len, cfg.short_filter_order)
        self.mlp = nn.Sequential(nn.Linear(cfg.d_model, cfg.d_inner), nn.GELU(), nn.Linear(cfg.d_inner, cfg.d_model))

    def forward(self, x):
        x = x + self.mixer(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class HyenaDNAPreTrainedModel(PreTrainedModel):
    config_class = HyenaConfig
    base_model_prefix = "hyena"

    def _init_weights(self, module):
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, std=0.2)


class HyenaDNAModel(HyenaDNAPreTrainedModel):
    def __init__(self, config):
        super().__init__(config)
        self.embeddings = nn.Embedding(config.vocab_size, config.d_model)
        self.layers = nn.ModuleList([HyenaBlock(config) for _ in range(config.n_layer)])
        self.ln_f = nn.LayerNorm(config.d_model)
        self.post_init()

    def forward(self, input_ids=None, inputs_embeds=None, output_hidden_states=None, return_dict=None):
        x = self.embeddings(input_ids) if inputs_embeds is None else inputs_embeds
        states = [x]
        for k, layer in enumerate(self.layers):
            x = layer(x)
            states.append(self.ln_f(x) if k == len(self.layers) - 1 else x)
        x = self.ln_f(x)
        return BaseModelOutputWithNoAttention(last_hidden_state=x,
                                              hidden_states=tuple(states) if output_hidden_states else None)
