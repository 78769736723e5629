"""`hearth serve`'s /v1/responses through the official `openai` Python
client's `responses.create`, whole and streamed.

Run by cli/tests/server.rs (`openai_responses_python_client`), which starts
the server and sets OPENAI_BASE_URL and OPENAI_API_KEY. Plain asserts, no
pytest needed; prints one summary line.
"""

import os

import openai

from checks import check, summary

client = openai.OpenAI(
    base_url=os.environ["OPENAI_BASE_URL"],
    api_key=os.environ.get("OPENAI_API_KEY", "none"),
    max_retries=0,
    timeout=300,
)
MODEL = os.environ["HEARTH_MODEL_ID"]
args = dict(
    model=MODEL,
    instructions="Answer in one short sentence.",
    input="Write a short sentence about cats.",
    max_output_tokens=12,
    temperature=0,
    store=False,
)

# Whole.
r = client.responses.create(**args)
check("response id", r.id.startswith("resp_"), r.id)
check("object", r.object == "response", r.object)
check("one message item", len(r.output) == 1 and r.output[0].type == "message", r.output)
item = r.output[0]
check("message id", item.id.startswith("msg_"), item.id)
check("role", item.role == "assistant", item)
check("output_text part", item.content[0].type == "output_text", item.content)
text = r.output_text
check("text", isinstance(text, str) and len(text) > 0, r)
check(
    "status",
    (r.status == "incomplete" and r.incomplete_details.reason == "max_output_tokens")
    or r.status == "completed",
    (r.status, r.incomplete_details),
)
check("usage output", r.usage.output_tokens == 12 or r.status == "completed", r.usage)
check(
    "usage total",
    r.usage.total_tokens == r.usage.input_tokens + r.usage.output_tokens,
    r.usage,
)

# Input as message items gives the same answer as the string.
items = client.responses.create(
    **{
        **args,
        "input": [
            {
                "type": "message",
                "role": "user",
                "content": [{"type": "input_text", "text": "Write a short sentence about cats."}],
            }
        ],
    }
)
check("items equal string", items.output_text == text, (items.output_text, text))
check("same input tokens", items.usage.input_tokens == r.usage.input_tokens, items.usage)

# Streamed: the documented event order, sequence numbers 0, 1, 2, ...
events = list(client.responses.create(**args, stream=True))
types = [e.type for e in events]
head = [
    "response.created",
    "response.in_progress",
    "response.output_item.added",
    "response.content_part.added",
]
tail = [
    "response.output_text.done",
    "response.content_part.done",
    "response.output_item.done",
]
check("stream head", types[:4] == head, types)
# `response.completed` even when cut short (its status says so): the
# client's stream helper waits for that event.
check("stream tail", types[-4:] == tail + ["response.completed"], types)
check("final status", events[-1].response.status == r.status, events[-1].response.status)
deltas = types[4:-4]
check("deltas", len(deltas) > 0 and all(t == "response.output_text.delta" for t in deltas), types)
check(
    "sequence numbers",
    [e.sequence_number for e in events] == list(range(len(events))),
    [e.sequence_number for e in events],
)
streamed = "".join(e.delta for e in events if e.type == "response.output_text.delta")
check("streamed text equals whole", streamed == text, (streamed, text))
check("text done", events[-4].text == text, events[-4])
final = events[-1].response
check("final response", final.output_text == text and final.id.startswith("resp_"), final)
check("final usage", final.usage.output_tokens == r.usage.output_tokens, final.usage)

# The client's stream helper, which checks each event against the
# snapshot it builds, ends with the same response.
with client.responses.stream(**args) as s:
    helped = s.get_final_response()
check("stream helper", helped.output_text == text, (helped.output_text, text))

# What a stateless, tool-less server refuses, as the client's exceptions.
for name, extra, says in [
    ("previous_response_id", {"previous_response_id": "resp_1"}, "no state"),
    ("store", {"store": True}, "no state"),
    (
        "tools",
        {"tools": [{"type": "function", "name": "f", "parameters": {"type": "object"}}]},
        "not supported yet",
    ),
    ("empty input", {"input": []}, "input"),
]:
    try:
        client.responses.create(**{**args, **extra})
        check(name, False, "no error")
    except openai.BadRequestError as e:
        check(name, e.status_code == 400 and says in str(e), e)
# As llama-server: with one model served, another name is served by it and
# the reply names the real id (`--strict-model` restores the 404).
other = client.responses.create(**{**args, "model": "gpt-4o-mini"})
check("another model's name is served by the one model", other.model == MODEL, other.model)

summary("openai responses")
