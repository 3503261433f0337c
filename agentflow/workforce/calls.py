"""Model calls made by the workforce's own roles (planner, coordinator, critic, answer).

Every such call is reported as a ``ModelCallEvent`` carrying its ``CallContext`` (run, node, role),
so usage and latency are attributable from the event log, and no backend exception escapes: a
failed call is an event with ``error`` set plus a ``None`` response the caller handles.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from typing import Any

import json_repair

from agentflow.errors import AgentflowError
from agentflow.llm.base import ChatModel
from agentflow.llm.types import ChatRequest, ChatResponse, Choice
from agentflow.runs.events import CANCELLED_CALL, EventSink, ModelCallEvent

logger = logging.getLogger(__name__)

_FENCE = re.compile(r"^```(?:json|JSON)?\s*\n?(.*?)\n?```\s*$", re.DOTALL)


async def complete_logged(model: ChatModel, request: ChatRequest, sink: EventSink) -> tuple[ChatResponse | None, str | None]:
    """Call the model once; return ``(response, None)`` or ``(None, error message)``."""
    name = getattr(model, "name", "")
    try:
        response = await model.complete(request)
    except asyncio.CancelledError:
        await sink(ModelCallEvent.failed(request, name, CANCELLED_CALL))
        raise
    except AgentflowError as exc:
        await sink(ModelCallEvent.failed(request, name, str(exc)))
        return None, exc.message
    except Exception as exc:  # a backend bug must not take the run down
        logger.exception("model %s raised on a %s call", name or "?", request.context.role)
        await sink(ModelCallEvent.failed(request, name, f"{type(exc).__name__}: {exc}"))
        return None, f"{type(exc).__name__}: {exc}"
    await sink(ModelCallEvent.succeeded(request, response))
    if not response.choices:
        return None, "the model returned no choices"
    return response, None


def parse_json_object(choice: Choice) -> tuple[dict[str, Any] | list[Any] | None, str | None]:
    """The JSON value of a structured-output reply, repairing near-JSON; ``(None, why)`` if hopeless."""
    if isinstance(choice.parsed, dict | list):
        return choice.parsed, None
    text = (choice.text or "").strip()
    if not text:
        return None, "the reply was empty; reply with the JSON object only"
    fenced = _FENCE.match(text)
    if fenced:
        text = fenced.group(1).strip()
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        start = min((i for i in (text.find("{"), text.find("[")) if i >= 0), default=-1)
        if start < 0:
            return None, f"the reply is not JSON ({exc.msg} at position {exc.pos}); reply with the JSON object only"
        try:
            value = json_repair.loads(text[start:])
        except Exception:  # json_repair is best effort; any failure means "not JSON"
            value = None
        if not isinstance(value, dict | list) or not value:
            return None, f"the reply is not valid JSON ({exc.msg} at position {exc.pos}); reply with the JSON object only"
    if not isinstance(value, dict | list):
        return None, f"the reply is JSON but not an object (got {type(value).__name__}); reply with a JSON object"
    return value, None
