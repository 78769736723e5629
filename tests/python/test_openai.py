"""`hearth serve` through the official `openai` Python client.

Run by cli/tests/server.rs (`openai_python_client`), which starts the
server and sets OPENAI_BASE_URL and OPENAI_API_KEY. Plain asserts, no
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


# /v1/models
models = client.models.list()
ids = [m.id for m in models.data]
check("models", ids == [MODEL], ids)

messages = [{"role": "user", "content": "Write a short sentence about cats."}]
args = dict(model=MODEL, messages=messages, max_tokens=16, temperature=0, seed=1)

# Chat, whole.
whole = client.chat.completions.create(**args)
text = whole.choices[0].message.content
check("chat text", isinstance(text, str) and len(text) > 0, whole)
check("chat role", whole.choices[0].message.role == "assistant", whole)
check("chat finish", whole.choices[0].finish_reason in ("stop", "length"), whole)
check("chat usage", whole.usage.completion_tokens == 16 or whole.choices[0].finish_reason == "stop", whole.usage)
check("usage total", whole.usage.total_tokens == whole.usage.prompt_tokens + whole.usage.completion_tokens, whole.usage)

# Chat, streamed: the same text, usage in the last chunk.
stream = client.chat.completions.create(**args, stream=True, stream_options={"include_usage": True})
parts, finish, usage = [], None, None
for chunk in stream:
    if chunk.usage is not None:
        usage = chunk.usage
    for c in chunk.choices:
        if c.delta.content:
            parts.append(c.delta.content)
        if c.finish_reason:
            finish = c.finish_reason
check("streamed text equals whole text", "".join(parts) == text, ("".join(parts), text))
check("streamed finish", finish == whole.choices[0].finish_reason, finish)
check("streamed usage", usage is not None and usage.completion_tokens == whole.usage.completion_tokens, usage)

# Text completion.
comp = client.completions.create(model=MODEL, prompt="The capital of France is", max_tokens=8, temperature=0)
check("completion", comp.choices[0].finish_reason == "length" and len(comp.choices[0].text) > 0, comp)
check("completion usage", comp.usage.completion_tokens == 8, comp.usage)
streamed = "".join(
    c.choices[0].text
    for c in client.completions.create(
        model=MODEL, prompt="The capital of France is", max_tokens=8, temperature=0, stream=True
    )
    if c.choices
)
check("streamed completion", streamed == comp.choices[0].text, (streamed, comp.choices[0].text))

# Logprobs.
lp = client.chat.completions.create(**{**args, "max_tokens": 3}, logprobs=True, top_logprobs=2)
content = lp.choices[0].logprobs.content
check("logprobs", len(content) == 3 and all(len(t.top_logprobs) == 2 for t in content), content)

# Errors arrive as the client's exception types.
# Another model's name is served by the one model, the reply naming it.
other = client.chat.completions.create(**{**args, "model": "gpt-4o-mini", "max_tokens": 2})
check("another model name is served", other.model == MODEL, other)
try:
    client.models.retrieve("no-such-model")
    check("unknown model", False, "no error")
except openai.NotFoundError as e:
    check("unknown model", e.status_code == 404, e)
try:
    client.chat.completions.create(**{**args, "messages": []})
    check("empty messages", False, "no error")
except openai.BadRequestError as e:
    check("empty messages", e.status_code == 400 and "messages" in str(e), e)
try:
    openai.OpenAI(base_url=os.environ["OPENAI_BASE_URL"], api_key="wrong", max_retries=0).models.list()
    check("wrong key", not os.environ.get("OPENAI_API_KEY"), "no error with a key set")
except openai.AuthenticationError as e:
    check("wrong key", e.status_code == 401, e)

summary("openai client")
