"""Character tokenizer of the HyenaDNA / Caduceus kind (remote code of the test model folders).

One token per base; vocabulary [CLS] [SEP] [BOS] [MASK] [PAD] [RESERVED] [UNK] A C G T N (ids 0-11,
as the hub tokenizers of both families); a sequence is encoded as its bases followed by [SEP].
"""

from transformers import PreTrainedTokenizer

SPECIALS = ["[CLS]", "[SEP]", "[BOS]", "[MASK]", "[PAD]", "[RESERVED]", "[UNK]"]


class CharacterTokenizer(PreTrainedTokenizer):
    model_input_names = ["input_ids"]

    def __init__(self, characters=("A", "C", "G", "T", "N"), model_max_length=1024, padding_side="left", **kwargs):
        self.characters = list(characters)
        self._vocab = {tok: i for i, tok in enumerate(SPECIALS + self.characters)}
        self._ids = {i: tok for tok, i in self._vocab.items()}
        defaults = {"bos_token": "[BOS]", "eos_token": "[SEP]", "sep_token": "[SEP]", "cls_token": "[CLS]",
                    "pad_token": "[PAD]", "mask_token": "[MASK]", "unk_token": "[UNK]"}
        for key, value in defaults.items():
            kwargs.setdefault(key, value)
        super().__init__(model_max_length=model_max_length, padding_side=padding_side,
                         characters=self.characters, **kwargs)

    @property
    def vocab_size(self) -> int:
        return len(self._vocab)

    def get_vocab(self):
        return dict(self._vocab)

    def _tokenize(self, text, **kwargs):
        return list(text)

    def _convert_token_to_id(self, token):
        return self._vocab.get(token, self._vocab["[UNK]"])

    def _convert_id_to_token(self, index):
        return self._ids.get(index, "[UNK]")

    def convert_tokens_to_string(self, tokens):
        return "".join(tokens)

    def build_inputs_with_special_tokens(self, token_ids_0, token_ids_1=None):
        out = token_ids_0 + [self.sep_token_id]
        return out if token_ids_1 is None else out + token_ids_1 + [self.sep_token_id]

    def get_special_tokens_mask(self, token_ids_0, token_ids_1=None, already_has_special_tokens=False):
        if already_has_special_tokens:
            return [1 if t < len(SPECIALS) else 0 for t in token_ids_0]
        mask = [0] * len(token_ids_0) + [1]
        return mask if token_ids_1 is None else mask + [0] * len(token_ids_1) + [1]

    def save_vocabulary(self, save_directory, filename_prefix=None):
        return ()
