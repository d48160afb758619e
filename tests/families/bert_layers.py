"""A small DNABERT-2-style BERT (remote code of a test model folder; written for these tests).

What matters of the family: BPE tokens, no position embeddings but ALiBi attention biases,
an encoder that drops pad tokens ("unpads") so each layer's output is [n_real_tokens, d], and a
BertModel whose forward returns a tuple (sequence output, pooled output) and ignores
output_hidden_states, so layers are read with forward hooks on module paths.
"""

import math

import torch
from torch import nn
from transformers import PretrainedConfig, PreTrainedModel


class BertConfig(PretrainedConfig):
    model_type = "bert"

    def __init__(self, vocab_size=256, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                 intermediate_size=64, type_vocab_size=2, pad_token_id=0, **kwargs):
        self.vocab_size, self.hidden_size, self.num_hidden_layers = vocab_size, hidden_size, num_hidden_layers
        self.num_attention_heads, self.intermediate_size = num_attention_heads, intermediate_size
        self.type_vocab_size = type_vocab_size
        super().__init__(pad_token_id=pad_token_id, **kwargs)


def alibi_slopes(n_heads):
    return torch.tensor([2 ** (-8 * (i + 1) / n_heads) for i in range(n_heads)])


class BertEmbeddings(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.word_embeddings = nn.Embedding(cfg.vocab_size, cfg.hidden_size, padding_idx=cfg.pad_token_id)
        self.token_type_embeddings = nn.Embedding(cfg.type_vocab_size, cfg.hidden_size)
        self.LayerNorm = nn.LayerNorm(cfg.hidden_size)

    def forward(self, input_ids, token_type_ids):
        return self.LayerNorm(self.word_embeddings(input_ids) + self.token_type_embeddings(token_type_ids))


class BertLayer(nn.Module):
    """Post-LN layer working on unpadded tokens: [nnz, d] in, [nnz, d] out."""

    def __init__(self, cfg):
        super().__init__()
        self.h, self.d = cfg.num_attention_heads, cfg.hidden_size
        self.Wqkv = nn.Linear(self.d, 3 * self.d)
        self.attn_out = nn.Linear(self.d, self.d)
        self.norm1, self.norm2 = nn.LayerNorm(self.d), nn.LayerNorm(self.d)
        self.mlp = nn.Sequential(nn.Linear(self.d, cfg.intermediate_size), nn.GELU(),
                                 nn.Linear(cfg.intermediate_size, self.d))

    def forward(self, hidden, mask, bias):
        b, t = mask.shape
        padded = hidden.new_zeros(b, t, 3 * self.d)
        padded[mask] = self.Wqkv(hidden)
        q, k, v = padded.view(b, t, 3, self.h, self.d // self.h).permute(2, 0, 3, 1, 4)
        scores = q @ k.transpose(-1, -2) / math.sqrt(self.d // self.h) + bias
        scores = scores.masked_fill(~mask[:, None, None, :], float("-inf"))
        ctx = (scores.softmax(-1) @ v).transpose(1, 2).reshape(b, t, self.d)[mask]
        hidden = self.norm1(hidden + self.attn_out(ctx))
        return self.norm2(hidden + self.mlp(hidden))


class BertEncoder(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.layer = nn.ModuleList([BertLayer(cfg) for _ in range(cfg.num_hidden_layers)])
        self.n_heads = cfg.num_attention_heads

    def forward(self, hidden, attention_mask):
        mask = attention_mask.bool()
        t = mask.shape[1]
        pos = torch.arange(t, device=hidden.device)
        slopes = alibi_slopes(self.n_heads).to(hidden.device)
        bias = -slopes[:, None, None] * (pos[None, :, None] - pos[None, None, :]).abs()  # ALiBi [h, t, t]
        x = hidden[mask]  # unpad: [nnz, d]
        for layer in self.layer:
            x = layer(x, mask, bias[None])
        out = hidden.new_zeros(hidden.shape)
        out[mask] = x
        return out


class BertPreTrainedModel(PreTrainedModel):
    config_class = BertConfig
    base_model_prefix = "bert"

    def _init_weights(self, module):
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, std=0.2)


class BertModel(BertPreTrainedModel):
    def __init__(self, config):
        super().__init__(config)
        self.embeddings = BertEmbeddings(config)
        self.encoder = BertEncoder(config)
        self.pooler = nn.Linear(config.hidden_size, config.hidden_size)
        self.post_init()

    def forward(self, input_ids, token_type_ids=None, attention_mask=None, position_ids=None, **kwargs):
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        sequence_output = self.encoder(self.embeddings(input_ids, token_type_ids), attention_mask)
        return sequence_output, torch.tanh(self.pooler(sequence_output[:, 0]))
