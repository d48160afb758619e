"""A small Caduceus-style model (remote code of a test model folder; written for these tests).

What matters of the family: character tokens, a bidirectional sequence mixer (a causal scan run
forwards and, with the same weights, backwards), no attention mask argument, hidden states
(embeddings, after each layer), and, with `rcps`, reverse-complement parameter sharing: the
embedding carries the forward strand in channels [:d] and the reverse-complement strand, flipped
back, in channels [d:], and every layer applies the SAME weights to both halves, so the model is
RC-equivariant: hidden(RC(x)) = flip_positions(swap_halves(hidden(x))).
"""

import torch
from torch import nn
from transformers import PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import MaskedLMOutput


class CaduceusConfig(PretrainedConfig):
    model_type = "caduceus"

    def __init__(self, vocab_size=12, d_model=16, n_layer=2, rcps=False, bidirectional=True,
                 complement_map=None, pad_token_id=4, **kwargs):
        self.vocab_size, self.d_model, self.n_layer = vocab_size, d_model, n_layer
        self.rcps, self.bidirectional = rcps, bidirectional
        # ids as in the character tokenizer: specials 0-6 map to themselves, A<->T (7<->10), C<->G (8<->9), N
        self.complement_map = complement_map or {str(i): i for i in range(7)} | {"7": 10, "8": 9, "9": 8, "10": 7,
                                                                                "11": 11}
        super().__init__(pad_token_id=pad_token_id, **kwargs)


class CausalScan(nn.Module):
    """A gated causal depthwise convolution standing in for a Mamba scan: position t sees t-3..t."""

    def __init__(self, d):
        super().__init__()
        self.in_proj = nn.Linear(d, 2 * d)
        self.conv = nn.Conv1d(d, d, 4, groups=d, padding=3)
        self.out_proj = nn.Linear(d, d)

    def forward(self, x):
        u, gate = self.in_proj(x).chunk(2, dim=-1)
        u = self.conv(u.transpose(1, 2))[..., :x.shape[1]].transpose(1, 2)
        return self.out_proj(torch.nn.functional.silu(u) * torch.sigmoid(gate))


class BiMambaLayer(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.norm = nn.LayerNorm(d)
        self.scan = CausalScan(d)  # weight-tied directions, as bidirectional_weight_tie in Caduceus

    def forward(self, x):
        h = self.norm(x)
        return x + self.scan(h) + self.scan(h.flip(1)).flip(1)


class RCPSLayer(nn.Module):
    """Applies one layer to both strands: forward half as is, RC half flipped to its own orientation."""

    def __init__(self, layer, d):
        super().__init__()
        self.layer, self.d = layer, d

    def forward(self, x):
        fwd, rc = x[..., :self.d], x[..., self.d:]
        return torch.cat([self.layer(fwd), self.layer(rc.flip(1)).flip(1)], dim=-1)


class CaduceusPreTrainedModel(PreTrainedModel):
    config_class = CaduceusConfig
    base_model_prefix = "caduceus"

    def _init_weights(self, module):
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, std=0.2)


class Caduceus(CaduceusPreTrainedModel):
    def __init__(self, config):
        super().__init__(config)
        d = config.d_model
        self.embeddings = nn.Embedding(config.vocab_size, d)
        layers = [BiMambaLayer(d) for _ in range(config.n_layer)]
        self.layers = nn.ModuleList([RCPSLayer(layer, d) for layer in layers] if config.rcps else layers)
        self.post_init()

    @property
    def complement(self):
        # built from the config on use: non-persistent buffers are not restored by from_pretrained
        comp = torch.arange(self.config.vocab_size, device=self.embeddings.weight.device)
        for k, v in self.config.complement_map.items():
            comp[int(k)] = int(v)
        return comp

    def forward(self, input_ids=None, output_hidden_states=None, return_dict=None):
        x = self.embeddings(input_ids)
        if self.config.rcps:  # the RC strand's embedding, flipped back to forward positions
            x = torch.cat([x, self.embeddings(self.complement[input_ids.flip(1)]).flip(1)], dim=-1)
        states = [x]
        for layer in self.layers:
            x = layer(x)
            states.append(x)
        return x, tuple(states) if output_hidden_states else None


class CaduceusForMaskedLM(CaduceusPreTrainedModel):
    def __init__(self, config):
        super().__init__(config)
        self.caduceus = Caduceus(config)
        self.lm_head = nn.Linear(config.d_model, config.vocab_size, bias=False)
        self.post_init()

    def forward(self, input_ids=None, output_hidden_states=None, return_dict=None):
        x, states = self.caduceus(input_ids, output_hidden_states=output_hidden_states)
        d = self.config.d_model
        logits = self.lm_head(x[..., :d]) if not self.config.rcps else \
            (self.lm_head(x[..., :d]) + self.lm_head(x[..., d:])[..., self.caduceus.complement]) / 2
        return MaskedLMOutput(logits=logits, hidden_states=states)
