"""`hearth serve` through the official `ollama` Python client.

Run by cli/tests/server.rs (`ollama_python_client`), which starts the server
and sets OLLAMA_HOST and HEARTH_MODEL_ID. Plain asserts, no pytest needed;
prints one summary line.
"""

import os

import ollama

from checks import check, summary

client = ollama.Client(host=os.environ["OLLAMA_HOST"], timeout=300)
MODEL = os.environ["HEARTH_MODEL_ID"]


# list: the fields the client's model types (and Zed) read.
models = client.list().models
check("list one model", len(models) == 1, models)
m = models[0]
check("list name", m.model == MODEL, m)
check("list size", m.size and m.size > 1_000_000, m)
check("list modified_at", m.modified_at is not None, m)
check("list details", m.details.format == "gguf" and m.details.family, m.details)
check("list quantization", m.details.quantization_level not in (None, "", "unknown"), m.details)
check("list parameter_size", m.details.parameter_size.endswith(("M", "B")), m.details)

# show: template, metadata, capabilities.
s = client.show(MODEL)
check("show capabilities", "completion" in (s.capabilities or []), s.capabilities)
check("show no tools yet", "tools" not in (s.capabilities or []), s.capabilities)
info = s.modelinfo
arch = info["general.architecture"]
check("show context_length", isinstance(info.get(f"{arch}.context_length"), int), arch)
check("show basename", isinstance(info.get("general.basename"), str), info.get("general.basename"))
check("show parameter_count", info.get("general.parameter_count", 0) > 1_000_000, info.get("general.parameter_count"))
check("show vocab elided", info.get("tokenizer.ggml.tokens", "absent") is None, type(info.get("tokenizer.ggml.tokens")))
check("show template", isinstance(s.template, str) and len(s.template) > 0, s.template)
check("show details", s.details.family == arch, s.details)
check("show :latest", client.show(MODEL + ":latest").details.family == arch)
try:
    client.show("no-such-model")
    check("show unknown model is 404", False)
except ollama.ResponseError as e:
    check("show unknown model is 404", e.status_code == 404, e)

# ps: the model is loaded.
ps = client.ps().models
check("ps", len(ps) == 1 and ps[0].model == MODEL and ps[0].size > 0, ps)

# chat and generate, whole and streamed, agree.
msgs = [{"role": "user", "content": "Name a fruit."}]
opts = {"num_predict": 8, "temperature": 0}
whole = client.chat(model=MODEL, messages=msgs, options=opts)
text = whole.message.content
check("chat text", isinstance(text, str) and len(text) > 0, whole)
check("chat done", whole.done and whole.eval_count == 8, whole)
streamed = "".join(p.message.content for p in client.chat(model=MODEL, messages=msgs, options=opts, stream=True))
check("chat stream equals whole", streamed == text, (streamed, text))
g = client.generate(model=MODEL, prompt="Name a fruit.", options=opts)
check("generate through the template", g.response == text, (g.response, text))

# Model management is not Hearth's: a clear 501.
try:
    client.pull(MODEL)
    check("pull is 501", False)
except ollama.ResponseError as e:
    check("pull is 501", e.status_code == 501 and "not supported" in str(e), e)

summary("ollama client")
