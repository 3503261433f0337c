"""Aggregating samples: normalization, majority vote, best-of-N, critic selection, LLM fuse."""

from __future__ import annotations

import pytest

from agentflow.budget.aggregate import (
    best_of_n,
    choice_key,
    critic_select,
    majority_vote,
    normalize_answer,
    parse_critic_scores,
    vote_texts,
)
from agentflow.budget.runtime import sample_and_aggregate
from agentflow.errors import ServerError
from agentflow.llm.types import ChatRequest, ChatResponse, Choice, Message, ToolCall, Usage
from agentflow.testing import ScriptedModel, call, reply


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("The answer is 1,000.", "1000"),
        ("FINAL ANSWER: Paris", "paris!"),
        ("Reasoning first.\n**Final Answer:** 3.50", "3.5"),
        ("the Eiffel Tower", "Eiffel tower."),
        ("$1,234,567", "1234567"),
        ("  42\n", "42.0"),
    ],
)
def test_normalization_makes_equivalent_answers_equal(a, b):
    assert normalize_answer(a) == normalize_answer(b) != ""


def test_normalization_keeps_different_answers_apart():
    assert normalize_answer("1,000") != normalize_answer("100")
    assert normalize_answer("Paris, Texas") != normalize_answer("Paris")
    assert normalize_answer(None) == normalize_answer("") == ""
    assert normalize_answer("A") == "a" != normalize_answer("B")  # multiple choice survives article removal


def test_majority_vote_over_normalized_answers():
    vote = vote_texts(["The answer is 1,000.", "FINAL ANSWER: 999", "1000", "final answer: 1000"])
    assert vote.key == "1000" and vote.counts["1000"] == 3
    assert vote.chosen_index == 0 and vote.agreement == pytest.approx(0.75) and not vote.tie


def test_majority_vote_ties_go_to_the_first_and_blanks_do_not_count():
    vote = majority_vote(["b", "", "a", "a", "b", ""])
    assert vote.tie and vote.key == "b" and vote.chosen_index == 0
    assert majority_vote(["", "x", ""]).key == "x"
    assert majority_vote(["", ""]).chosen_index == 0
    with pytest.raises(ValueError):
        majority_vote([])


def test_tool_call_samples_vote_by_their_calls():
    same_a = Choice(tool_calls=[ToolCall(name="search", arguments={"q": "x", "k": 3})])
    same_b = Choice(tool_calls=[ToolCall(name="search", arguments={"k": 3, "q": "x"})])
    other = Choice(tool_calls=[ToolCall(name="search", arguments={"q": "y"})])
    keys = [choice_key(c) for c in (other, same_a, same_b)]
    assert keys[1] == keys[2] != keys[0]
    assert majority_vote(keys).chosen_index == 1
    assert choice_key(Choice(text='{"a":1}', parsed={"a": 1})) == choice_key(Choice(text='{ "a": 1 }', parsed={"a": 1}))


async def test_best_of_n_with_sync_and_async_scorers():
    picked = await best_of_n(["short", "much longer answer", "mid one"], len)
    assert picked.chosen_index == 1 and picked.scores == [5, 18, 7]

    async def score(text: str) -> float:
        if text == "boom":
            raise RuntimeError("scorer bug")
        return {"a": 0.2, "b": 0.9}[text]

    picked = await best_of_n(["a", "boom", "b"], score)
    assert picked.chosen_index == 2 and picked.scores[1] is None and "scorer bug" in picked.errors[1]
    with pytest.raises(ValueError, match="no candidate could be scored"):
        await best_of_n(["boom"], score)


async def test_critic_selection_and_its_parsing():
    critic = ScriptedModel([reply({"scores": [0.1, 0.95, 0.4]})])
    selection, _ = await critic_select(critic, [Message.user("2+2?")], ["5", "4", "four-ish"])
    assert selection.chosen_index == 1
    request = critic.calls[0].request
    assert request.context.role == "critic" and request.output_schema.name == "candidate_scores"
    assert "Candidate 2:\n4" in request.messages[-1].content and "2+2?" in request.messages[-1].content

    def response(text: str) -> ChatResponse:
        return ChatResponse(choices=[Choice(text=text)])

    assert parse_critic_scores(response("```json\n{\"scores\": [0.5, 2, -1]}\n```"), 3) == [0.5, 1.0, 0.0]
    with pytest.raises(ValueError, match="2 scores for 3"):
        parse_critic_scores(response('{"scores": [0.5, 0.6]}'), 3)
    with pytest.raises(ValueError, match="empty"):
        parse_critic_scores(response(""), 3)


async def test_sample_and_aggregate_draws_n_in_one_request_and_votes():
    model = ScriptedModel(["Paris.", "FINAL ANSWER: paris", "Lyon"])
    text, details = await sample_and_aggregate(model, ChatRequest(messages=[Message.user("capital?")]), 3)
    assert len(model.calls) == 1 and model.calls[0].request.n == 3
    assert text == "Paris." and details.method_used == "vote"
    assert details.votes == {"paris": 2, "lyon": 1} and details.samples_received == 3


async def test_best_of_n_by_critic_and_fallback_to_vote_when_the_critic_fails():
    request = ChatRequest(messages=[Message.user("2+2?")])
    sampler = ScriptedModel(["5", "5", "4"])
    critic = ScriptedModel([reply({"scores": [0.2, 0.2, 0.9]})])
    text, details = await sample_and_aggregate(sampler, request, 3, "best_of_n", critic=critic)
    assert text == "4" and details.method_used == "best_of_n" and details.scores == [0.2, 0.2, 0.9]
    assert details.model_calls == 2

    sampler = ScriptedModel(["5", "5", "4"])
    broken = ScriptedModel([reply("I refuse to score")])
    text, details = await sample_and_aggregate(sampler, request, 3, "best_of_n", critic=broken)
    assert text == "5" and details.method_used == "vote"
    assert "fell back to majority vote" in details.notes[0]

    sampler = ScriptedModel(["5", "4"])
    down = ScriptedModel([ServerError("critic down")])
    text, details = await sample_and_aggregate(sampler, request, 2, "best_of_n", critic=down)
    assert details.method_used == "vote" and "ServerError" in details.notes[0]


async def test_fuse_step_and_its_fallback():
    request = ChatRequest(messages=[Message.user("Name two primes.")])
    sampler = ScriptedModel(["2 and 3", "3 and 5", "2 and 5"])
    fuser = ScriptedModel(["2 and 3"])
    text, details = await sample_and_aggregate(sampler, request, 3, "fuse", fuse_model=fuser)
    assert text == "2 and 3" and details.method_used == "fuse" and details.chosen_index is None
    fuse_prompt = fuser.calls[0].request.messages[-1].content
    assert "Candidate 3:\n2 and 5" in fuse_prompt and fuser.calls[0].request.context.role == "fuse"

    sampler = ScriptedModel(["x", "x", "y"])
    text, details = await sample_and_aggregate(sampler, request, 3, "fuse", fuse_model=ScriptedModel([""]))
    assert text == "x" and details.method_used == "vote" and "empty" in details.notes[0]


class _IgnoresN:
    """A server that ignores ``n`` (some llama.cpp builds do): always one choice."""

    name = "one-at-a-time"

    def __init__(self, answers: list[str]) -> None:
        self.answers = list(answers)
        self.requests: list[ChatRequest] = []

    async def complete(self, request: ChatRequest) -> ChatResponse:
        self.requests.append(request)
        return ChatResponse(choices=[Choice(text=self.answers.pop(0))], usage=Usage(prompt_tokens=5, completion_tokens=1))

    def stream(self, request):  # pragma: no cover - not used
        raise NotImplementedError


async def test_missing_samples_are_topped_up_once_and_noted():
    model = _IgnoresN(["red", "blue", "blue", "green"])
    text, details = await sample_and_aggregate(model, ChatRequest(messages=[Message.user("q")]), 3)
    assert [r.n for r in model.requests] == [3, 2]
    assert details.samples_received == 2 and "returned 1 of 3" in details.notes[0]
    assert text == "red"  # a tie between red and blue goes to the first sample


async def test_tool_call_choices_are_chosen_whole():
    model = ScriptedModel([call("search", q="x"), call("search", q="x"), call("search", q="y")])
    _, details = await sample_and_aggregate(model, ChatRequest(messages=[Message.user("find x")]), 3)
    assert details.chosen is not None and details.chosen.tool_calls[0].arguments == {"q": "x"}
