"""The roles on their own: critic verdict parsing, coordinator rules, answer stage and format rules."""

from __future__ import annotations

import math
from typing import Any

import pytest

from agentflow import ScriptedModel, Worker
from agentflow.errors import ConfigurationError, ServerError
from agentflow.llm.types import Choice, TokenLogprob
from agentflow.testing import by_role, reply
from agentflow.workforce import (
    AnswerStage,
    GaiaAnswerFormat,
    LLMCritic,
    Plan,
    PlanNode,
    RuleBasedCoordinator,
    WorkerProfile,
    Workforce,
)
from agentflow.workforce.coordinator import ToolInfo

# --- critic ---------------------------------------------------------------------------------------


def test_verdict_probability_from_the_verdict_token_logprobs() -> None:
    critic = LLMCritic(threshold=0.5)
    tokens = [TokenLogprob(token='{"', logprob=0.0), TokenLogprob(token="verdict", logprob=0.0),
              TokenLogprob(token='":"', logprob=0.0),
              TokenLogprob(token="yes", logprob=-0.9, top={"yes": -0.9, "no": -0.6, " maybe": -3.0})]
    choice = Choice(text='{"verdict":"yes","score":0.99,"feedback":""}', logprobs=tokens)
    verdict = critic.interpret(choice)
    expected = math.exp(-0.9) / (math.exp(-0.9) + math.exp(-0.6))
    assert verdict.source == "logprobs"
    assert verdict.probability == pytest.approx(expected, abs=1e-6)
    assert not verdict.passed  # the token distribution leans to "no" even though the text says yes


def test_verbalized_score_when_no_logprobs() -> None:
    critic = LLMCritic(threshold=0.7, use_logprobs=False)
    v = critic.interpret(Choice(text='{"verdict": "yes", "score": 0.8, "feedback": ""}'))
    assert v.passed and v.source == "verbalized" and v.probability == 0.8
    v = critic.interpret(Choice(text='{"verdict": "yes", "score": 65, "feedback": "meh"}'))  # a percentage
    assert v.probability == 0.65 and not v.passed and v.feedback == "meh"
    v = critic.interpret(Choice(text='{"verdict": "no", "feedback": "wrong year"}'))
    assert v.probability == 0.0 and not v.passed


def test_partially_malformed_verdicts_are_used_and_marked() -> None:
    critic = LLMCritic(use_logprobs=False)
    v = critic.interpret(Choice(text='{"score": 0.9}'))
    assert v.passed and v.malformed
    v = critic.interpret(Choice(text="No. The list misses two items."))
    assert not v.passed and v.malformed and "misses two items" in v.feedback
    v = critic.interpret(Choice(text="```json\n{\"verdict\": \"no\", \"score\": 0.2, \"feedback\": \"x\"}\n```"))
    assert not v.passed and not v.malformed


@pytest.mark.parametrize("on_malformed,passed", [("pass", True), ("fail", False)])
def test_unusable_verdicts_give_the_configured_default(on_malformed: Any, passed: bool) -> None:
    critic = LLMCritic(on_malformed=on_malformed, threshold=0.6)
    v = critic.interpret(Choice(text="The weather is nice."))
    assert v.malformed and v.source == "default" and v.passed is passed
    assert v.raw == "The weather is nice."


async def test_critic_call_failure_and_missing_model() -> None:
    node = PlanNode(id="a", goal="A")
    v = await LLMCritic(ScriptedModel([ServerError("down")])).check(request="r", node=node, output="x")
    assert v.malformed and "down" in v.feedback
    assert (await LLMCritic(None).check(request="r", node=node, output="x")).malformed


async def test_critic_prompt_carries_criteria_and_asks_for_logprobs() -> None:
    m = ScriptedModel([reply({"verdict": "yes", "score": 1, "feedback": ""})])
    node = PlanNode(id="a", goal="Find the year", expected_output="a year", acceptance_criteria="four digits")
    await LLMCritic(m).check(request="When?", node=node, output="1989", context="## inputs")
    req = m.requests[0]
    text = req.messages[-1].content or ""
    assert "Find the year" in text and "four digits" in text and "1989" in text and "## inputs" in text
    assert req.logprobs and req.top_logprobs == 5 and req.context.role == "critic"
    assert req.output_schema is not None and list(req.output_schema.json_schema["properties"])[0] == "verdict"


def test_critic_threshold_is_validated() -> None:
    with pytest.raises(ValueError):
        LLMCritic(threshold=1.5)


# --- coordinator ----------------------------------------------------------------------------------

PROFILES = [
    WorkerProfile(name="researcher", description="searches the web and reads pages",
                  tools=[ToolInfo(name="web_search", description="search the web")]),
    WorkerProfile(name="coder", description="writes and runs python code",
                  tools=[ToolInfo(name="python", description="run python code to compute things")]),
]


def test_rule_based_coordinator_prefers_hints_then_overlap_then_default() -> None:
    rules = RuleBasedCoordinator(default="coder")
    hinted = rules.choose(PlanNode(id="a", goal="anything", worker="Researcher"), PROFILES)
    assert hinted is not None and (hinted.worker, hinted.source) == ("researcher", "hint")
    by_tools = rules.choose(PlanNode(id="b", goal="compute the mean with python"), PROFILES)
    assert by_tools is not None and (by_tools.worker, by_tools.source) == ("coder", "rules")
    by_words = rules.choose(PlanNode(id="c", goal="search for the 1999 census page"), PROFILES)
    assert by_words is not None and by_words.worker == "researcher"
    fallback = rules.choose(PlanNode(id="d", goal="zzz"), PROFILES)
    assert fallback is not None and (fallback.worker, fallback.source) == ("coder", "fallback")
    excluded = rules.choose(PlanNode(id="e", goal="compute with python"), PROFILES, banned={"coder"})
    assert excluded is not None and excluded.worker == "researcher"
    assert rules.choose(PlanNode(id="f", goal="x"), PROFILES, banned={"coder", "researcher"}) is None


def test_worker_profile_reads_tools_and_side_effects() -> None:
    from agentflow.tools import tool

    @tool(side_effects=True)
    def delete_file(path: str) -> str:
        """Delete a file.

        Args:
            path: which file.
        """
        return path

    profile = WorkerProfile.of(Worker("janitor", "cleans up", tools=[delete_file]))
    assert profile.side_effects and profile.tools[0].name == "delete_file"
    assert "janitor: cleans up [tools: delete_file]" in profile.describe()


# --- answer stage and formats ---------------------------------------------------------------------


@pytest.mark.parametrize("raw,question,expected", [
    ("FINAL ANSWER: 1,234,567", "How many?", "1234567"),
    ("**Paris.**", "Which city?", "Paris"),
    ("FINAL ANSWER: Paris.", "Which city?", "Paris"),
    ("$42", "How much did it cost?", "42"),
    ("42%", "What share?", "42"),
    ("42%", "What percent of voters?", "42%"),
    ("17 years", "How many years?", "17"),
    ("3.14", "pi?", "3.14"),
    ("- red\n- green\n- blue", "Which colors?", "red, green, blue"),
    ("apples; pears", "Fruits?", "apples, pears"),
    ('"Tokyo"', "Where?", "Tokyo"),
    ("1,2", "Which?", "1, 2"),  # a list to GAIA's scorer either way
])
def test_gaia_format_normalization(raw: str, question: str, expected: str) -> None:
    assert GaiaAnswerFormat().normalize(raw, question=question) == expected


async def test_answer_stage_uses_format_rules_and_normalizes() -> None:
    m = ScriptedModel([reply("FINAL ANSWER: 12,000")])
    stage = AnswerStage(m, formatter=GaiaAnswerFormat())
    outcome = await stage.run(request="How many people?", results=[("n1", "count them", "about 12,000 people")])
    assert outcome.answer == "12000" and outcome.raw == "FINAL ANSWER: 12,000" and not outcome.failed
    system = m.requests[0].messages[0].content or ""
    assert "comma-separated list" in system and m.requests[0].context.role == "answer"


async def test_answer_stage_falls_back_to_the_results() -> None:
    stage = AnswerStage(ScriptedModel([ServerError("gone")]), formatter=GaiaAnswerFormat())
    outcome = await stage.run(request="How many?", results=[("n1", "count", "FINAL ANSWER: 1,000")])
    assert outcome.answer == "1000" and "answer call failed" in (outcome.reason or "")
    empty = await stage.run(request="q", results=[])
    assert empty.failed and empty.answer == ""
    direct = await AnswerStage(None).run(request="q", results=[("a", "g", " text ")])
    assert direct.answer == "text"


async def test_workforce_with_gaia_formatter_and_without_answer_model() -> None:
    m = ScriptedModel(by_role(worker=lambda req: reply("FINAL ANSWER: 2,048"), answer=lambda req: reply("x")))
    plan = Plan(nodes=[PlanNode(id="a", goal="A")])
    result = await Workforce([Worker("w", model=m)], model=m, planner=None, critic=None,
                             formatter=GaiaAnswerFormat()).run("How many?", plan=plan)
    assert result.answer == "x"
    direct = await Workforce([Worker("w", model=m)], model=m, planner=None, critic=None, answer=None,
                             formatter=GaiaAnswerFormat()).run("How many?", plan=plan)
    assert direct.answer == "2048"  # no answer model: the output result, normalized by the GAIA rules


def test_workforce_configuration_errors() -> None:
    m = ScriptedModel([])
    with pytest.raises(ConfigurationError) as err:
        Workforce([Worker("w", model=m)], model=m, max_concurency=3)
    assert "valid options" in str(err.value)
    with pytest.raises(ConfigurationError):
        Workforce([Worker("w", model=m), Worker("w", model=m)])
    with pytest.raises(ConfigurationError):
        Workforce([Worker("w")])  # nobody has a model
    with pytest.raises(ConfigurationError):
        Workforce([Worker("w", model=m)], per_model_limits={"x": 0})
    wf = Workforce([Worker("w", model=m)])
    assert wf.model is m and wf.critic is not None and wf.planner is not None
    with pytest.raises(ConfigurationError):
        wf.run_sync("   ")


def test_run_sync_from_a_script() -> None:
    m = ScriptedModel(by_role(worker=lambda req: reply("four"), answer=lambda req: reply("4")))
    wf = Workforce([Worker("w", model=m)], model=m, planner=None, critic=None)
    result = wf.run_sync("2+2?", plan=Plan(nodes=[PlanNode(id="a", goal="add")]))
    assert result.ok and result.answer == "4"


async def test_build_default_workforce_for_the_cli() -> None:
    from agentflow.tools.builtin import calculator
    from agentflow.workforce import build_default_workforce

    plan = {"nodes": [{"id": "calc", "goal": "compute 6*7", "worker": "assistant"},
                      {"id": "say", "goal": "state {calc} in words", "inputs": ["calc"], "worker": "writer"}],
            "outputs": ["say"]}
    m = ScriptedModel(by_role(planner=[reply(plan)], worker=lambda req: reply(f"{req.context.worker} did it"),
                              critic=lambda req: reply({"verdict": "yes", "score": 1, "feedback": ""}),
                              answer=lambda req: reply("forty-two")))
    wf = build_default_workforce(m, [calculator], max_concurrency=4)
    assert sorted(wf.workers) == ["assistant", "writer"]
    assert [t.name for t in wf.workers["assistant"].tools] == ["calculator"] and not wf.workers["writer"].tools
    result = await wf.run("What is 6*7, in words?")
    assert result.ok and result.answer == "forty-two"
    assert {n: r.worker for n, r in result.nodes.items()} == {"calc": "assistant", "say": "writer"}
    assert m.calls_for(role="coordinator") == []  # both nodes named their worker
    solo = build_default_workforce(m, critic=False)
    assert list(solo.workers) == ["assistant"] and solo.critic is None
