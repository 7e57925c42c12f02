"""One sampled sequence's text as its tokens arrive: incremental detokenization, stop strings, the token budget and
the reasoning-length cap, decided the same way for every engine.

Text is sent as soon as it is final: a token that ends inside a multi-byte character waits for the next one, and
with stop strings the last `len(longest stop) - 1` characters wait until they cannot start one. Detokenizing
follows text-generation-inference's prefix/read offsets, so each token costs one short decode whatever the length.
"""

from __future__ import annotations

from ssp.serve.protocol import THINKING_LENGTH

THINK_END = "</think>"  # closes the reasoning block of reasoning models (Qwen3, DeepSeek-R1, VibeThinker)


class SequenceText:
    def __init__(
        self,
        tokenizer,
        stop_ids: set[int],
        stop_strings: list[str],
        max_tokens: int,
        max_thinking_tokens: int | None = None,
    ):
        """`max_tokens`: the budget, in tokens; `max_thinking_tokens`: the most tokens before the reasoning block
        closes (`</think>`; a response that never writes one is reasoning throughout), None for no cap."""
        self.tokenizer = tokenizer
        self.stop_ids = stop_ids
        self.stop_strings = stop_strings
        self.hold = max((len(s) for s in stop_strings), default=1) - 1
        self.max_tokens = max_tokens
        self.max_thinking_tokens = max_thinking_tokens
        self.ids: list[int] = []
        self.tokens = 0  # generated, counting a stop token
        self.text = ""
        self.sent = 0  # characters of `text` already returned
        self.thinking = True
        self.finish_reason: str | None = None
        self._prefix_offset = 0
        self._read_offset = 0

    def add(self, token_id: int) -> str:
        """The new text that `token_id` makes final ("" when none); after the sequence finished, always ""."""
        if self.finish_reason is not None:
            return ""
        self.tokens += 1
        if token_id in self.stop_ids:
            return self._finish("stop")
        self.ids.append(token_id)
        before = len(self.text)
        self.text += self._detokenize()
        if self.stop_strings:
            found = [i for i in (self.text.find(s, self.sent) for s in self.stop_strings) if i >= 0]
            if found:
                self.text = self.text[: min(found)]
                return self._finish("stop")
        if self.thinking and THINK_END in self.text[max(0, before - len(THINK_END)) :]:
            self.thinking = False
        if self.thinking and self.max_thinking_tokens is not None and self.tokens >= self.max_thinking_tokens:
            return self._finish(THINKING_LENGTH)
        if self.tokens >= self.max_tokens:
            return self._finish("length")
        return self._take(len(self.text) - self.hold)

    def end(self) -> str:
        """The held-back text, when the engine stopped this sequence without a reason of its own: the budget or the
        context ran out."""
        if self.finish_reason is not None:
            return ""
        return self._finish("length")

    def _finish(self, reason: str) -> str:
        self.finish_reason = reason
        return self._take(len(self.text))

    def _take(self, upto: int) -> str:
        if upto <= self.sent:
            return ""
        delta, self.sent = self.text[self.sent : upto], upto
        return delta

    def _detokenize(self) -> str:
        prefix = self.tokenizer.decode(self.ids[self._prefix_offset : self._read_offset], skip_special_tokens=True)
        text = self.tokenizer.decode(self.ids[self._prefix_offset :], skip_special_tokens=True)
        if len(text) > len(prefix) and not text.endswith("\ufffd"):
            self._prefix_offset, self._read_offset = self._read_offset, len(self.ids)
            return text[len(prefix) :]
        return ""
