"""The serving rules without a server: one sequence's text (stop strings, held-back characters, budget, reasoning
cap), request sampling (presets, model-name suffixes, overrides) and request validation messages."""

import pytest
from pydantic import ValidationError

from ssp.generation.presets import PRESETS
from ssp.serve.protocol import ChatRequest, CompletionRequest, RequestError, request_sampling, validation_message
from ssp.serve.text import SequenceText


class CharTokenizer:
    """Token i is chr(i); 0xE2 0x82 0xAC spell a euro sign only together, as byte-level BPE pieces do."""

    def decode(self, ids, skip_special_tokens=True):
        data = bytes(i for i in ids if i < 256)
        return data.decode("utf-8", errors="replace")


def feed(sequence: SequenceText, text: bytes | str) -> list[str]:
    data = text.encode() if isinstance(text, str) else text
    return [sequence.add(b) for b in data]


def test_text_is_sent_as_tokens_arrive_and_the_stop_token_ends_it():
    sequence = SequenceText(CharTokenizer(), {999}, [], max_tokens=100)
    assert feed(sequence, "abc") == ["a", "b", "c"]
    assert sequence.add(999) == ""
    assert sequence.finish_reason == "stop" and sequence.tokens == 4  # the stop token counts, as in usage
    assert sequence.add(ord("d")) == ""  # nothing after the end


def test_a_multibyte_character_waits_for_its_last_byte():
    sequence = SequenceText(CharTokenizer(), set(), [], max_tokens=100)
    assert feed(sequence, "€".encode()) == ["", "", "€"]


def test_a_stop_string_across_tokens_is_cut_and_never_sent():
    sequence = SequenceText(CharTokenizer(), set(), ["END"], max_tokens=100)
    sent = feed(sequence, "ab EN")  # "EN" may start the stop string: held back
    assert "".join(sent) == "ab "
    assert sequence.add(ord("D")) == ""
    assert sequence.finish_reason == "stop" and sequence.text == "ab "


def test_held_back_text_that_starts_no_stop_string_is_sent_at_the_end():
    sequence = SequenceText(CharTokenizer(), set(), ["END"], max_tokens=4)
    sent = feed(sequence, "xyEN")
    assert "".join(sent) == "xyEN" and sequence.finish_reason == "length"  # the budget flushes what was held


def test_end_flushes_and_says_length():
    sequence = SequenceText(CharTokenizer(), set(), ["STOP"], max_tokens=100)
    sent = "".join(feed(sequence, "abcST"))
    assert sent + sequence.end() == "abcST" and sequence.finish_reason == "length"


def test_the_reasoning_cap_ends_an_unclosed_thinking_block():
    sequence = SequenceText(CharTokenizer(), set(), [], max_tokens=100, max_thinking_tokens=5)
    assert "".join(feed(sequence, "<thinking on and on")) == "<thin"
    assert sequence.finish_reason == "thinking_length" and sequence.tokens == 5


def test_the_reasoning_cap_no_longer_applies_once_the_block_closes():
    sequence = SequenceText(CharTokenizer(), set(), [], max_tokens=100, max_thinking_tokens=10)
    text = "a</think>the answer is 4"
    assert "".join(feed(sequence, text)) == text and sequence.finish_reason is None


def chat(**fields) -> ChatRequest:
    return ChatRequest.model_validate({"messages": [{"role": "user", "content": "hi"}], **fields})


DEFAULT = PRESETS["recommended"]


def test_the_default_sampling_is_the_recommended_preset():
    sampling = request_sampling(chat(), "m", DEFAULT, "recommended")
    assert (sampling.temperature, sampling.top_p, sampling.repetition_penalty, sampling.n) == (0.6, 0.95, 1.1, 1)


def test_a_preset_by_field_or_by_model_suffix_with_request_overrides():
    by_field = request_sampling(chat(preset="code_generation"), "m", DEFAULT, "recommended")
    by_name = request_sampling(chat(model="m:code_generation"), "m", DEFAULT, "recommended")
    assert by_field == by_name
    assert (by_field.temperature, by_field.top_p, by_field.max_new_tokens) == (0.8, 0.9, 4096)
    tuned = request_sampling(chat(preset="code_generation", temperature=0.2, max_tokens=7, n=3), "m", DEFAULT, "x")
    assert (tuned.temperature, tuned.top_p, tuned.max_new_tokens, tuned.n) == (0.2, 0.9, 7, 3)


@pytest.mark.parametrize(
    ("fields", "status", "message"),
    [
        ({"preset": "fast"}, 400, "preset: unknown preset 'fast'"),
        ({"preset": "math"}, 400, "preset: unknown preset 'math'"),  # an evaluation protocol, not a serving preset
        ({"model": "other"}, 404, "model: 'other' is not served here"),
        ({"model": "m:code_generation", "preset": "creative_problem_solving"}, 400, "preset: 'creative_problem_"),
    ],
)
def test_bad_presets_and_models_are_refused_naming_the_field(fields, status, message):
    with pytest.raises(RequestError) as caught:
        request_sampling(chat(**fields), "m", DEFAULT, "recommended")
    assert caught.value.status == status and caught.value.message.startswith(message)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"temperature": "hot"}, "temperature: Input should be a valid number"),
        ({"n": 1.5}, "n: Input should be a valid integer"),
        ({"stream": "yes"}, "stream: Input should be a valid boolean"),
        ({"top_p": 0}, "top_p: Input should be greater than 0"),
        ({"n": 17}, "n: Input should be less than or equal to 16"),
        ({"messages": [{"role": "robot", "content": "x"}]}, "messages.0.role: Input should be 'system', 'user'"),
        ({"messages": []}, "messages: List should have at least 1 item"),
    ],
)
def test_wrong_types_and_ranges_name_their_field(fields, message):
    with pytest.raises(ValidationError) as caught:
        ChatRequest.model_validate({"messages": [{"role": "user", "content": "hi"}], **fields})
    text, field = validation_message(caught.value.errors())
    assert text.startswith(message) and field == message.split(":")[0]


def test_unsupported_fields_are_refused_and_harmless_ones_ignored():
    with pytest.raises(RequestError, match="logprobs: not supported"):
        chat(logprobs=True).refuse_unsupported()
    chat(logprobs=False, user="me", frequency_penalty=0).refuse_unsupported()  # defaults change nothing


def test_stop_strings_and_completion_prompts_are_checked():
    with pytest.raises(RequestError, match="stop: at most 4"):
        chat(stop=list("abcde")).stop_strings()
    with pytest.raises(RequestError, match="stop: an empty string"):
        chat(stop="").stop_strings()
    assert chat(stop="x").stop_strings() == ["x"]
    with pytest.raises(RequestError, match="prompt: one prompt per request, got 2"):
        CompletionRequest.model_validate({"prompt": ["a", "b"]}).prompt_text()
