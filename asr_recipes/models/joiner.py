"""Transducer joiner: logits(t, u) = output_linear(tanh(encoder_proj(enc_t) + decoder_proj(dec_u))).

The two input projections are separate modules so callers can apply them once and
then combine many (t, u) pairs cheaply: training projects (N, T', D) and (N, U+1, D)
before gathering the pruned pairs, decoding projects each utterance's encoder output
once. Pass project_input=False for such already-projected inputs.
"""

from torch import Tensor, nn


class Joiner(nn.Module):
    def __init__(self, encoder_dim: int, decoder_dim: int, joiner_dim: int, vocab_size: int):
        super().__init__()
        self.encoder_proj = nn.Linear(encoder_dim, joiner_dim)
        self.decoder_proj = nn.Linear(decoder_dim, joiner_dim)
        self.output_linear = nn.Linear(joiner_dim, vocab_size)

    def forward(self, encoder_out: Tensor, decoder_out: Tensor, project_input: bool = True) -> Tensor:
        """
        Args:
            encoder_out: (..., encoder_dim), or (..., joiner_dim) if not project_input.
            decoder_out: (..., decoder_dim), or (..., joiner_dim) if not project_input.
                The leading dims of both must be equal or broadcastable with the same
                number of dims, e.g. (N, T, S, *) and (N, T, S, *) for pruned training,
                (N, T, 1, *) and (N, 1, U+1, *) for the full lattice, (N, *) for one
                decoding step.
            project_input: apply encoder_proj / decoder_proj first.
        Returns:
            (..., vocab_size) unnormalised logits over the broadcast leading dims.
        """
        if encoder_out.ndim != decoder_out.ndim:
            raise ValueError(
                f"joiner inputs need the same number of dims, got encoder_out {tuple(encoder_out.shape)} "
                f"and decoder_out {tuple(decoder_out.shape)}"
            )
        if project_input:
            encoder_out = self.encoder_proj(encoder_out)  # (..., J)
            decoder_out = self.decoder_proj(decoder_out)  # (..., J)
        return self.output_linear((encoder_out + decoder_out).tanh())  # (..., V)
