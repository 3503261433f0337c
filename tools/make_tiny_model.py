#!/usr/bin/env python3
"""Build the tiny random-weight Qwen2-style model that agentflow's vLLM smoke tests serve.

No model weights can be downloaded on the machines agentflow is developed on, yet the vLLM
backend must be tested against a real server. This script builds, in about ten seconds, a model
that vLLM serves exactly like a real Qwen2.5 checkpoint: a ``Qwen2ForCausalLM`` with random
weights (0.8M parameters), a byte-level BPE tokenizer trained on local text, and a Qwen2.5-style
chat template that renders tools and hermes ``<tool_call>`` blocks, so vLLM's ``hermes`` tool
parser, structured outputs, prefix caching and sampling all run for real. Its output is random
text: tests assert on structure, never on content.

Two details of the recipe matter for constrained decoding with random weights (DESIGN.md):

* the tokenizer is trained on whitespace-collapsed text, so no token holds runs of spaces or
  newlines that a JSON grammar would let a random model emit forever;
* ASCII control bytes other than ``\\n`` are left out of the byte alphabet, so constrained JSON
  strings cannot fill up with escaped control characters.

It needs ``torch``, ``transformers`` and ``tokenizers``, so run it with the vLLM venv's python
(``tools/vllm_env.py`` prints it). The result is cached under
``~/.cache/agentflow/tiny-model/<recipe-hash>`` (override the root with ``AGENTFLOW_TINY_MODEL_DIR``
or ``--root``); a second call only prints the path. The last stdout line is the model directory.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import os
import re
import shutil
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

RECIPE_VERSION = 1
VOCAB_SIZE = 4096
MODEL_CONFIG = {
    "architectures": ["Qwen2ForCausalLM"],
    "model_type": "qwen2",
    "hidden_size": 128,
    "intermediate_size": 256,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "vocab_size": VOCAB_SIZE,
    "max_position_embeddings": 8192,
    "rope_theta": 10000.0,
    "rms_norm_eps": 1e-6,
    "hidden_act": "silu",
    "tie_word_embeddings": True,
    "initializer_range": 0.02,
    "use_sliding_window": False,
    "attention_dropout": 0.0,
}
SEED = 0
#: how much local text trains the tokenizer; more only slows the build
CORPUS_CHARS = 4_000_000

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
#: plain added tokens (not special): they survive ``skip_special_tokens`` so that vLLM's hermes
#: parser sees them in the decoded text, exactly as with real Qwen2.5 tokenizers
TOOL_TOKENS = ["<tool_call>", "</tool_call>", "<tool_response>", "</tool_response>"]

DEFAULT_SYSTEM = "You are a helpful assistant."

# Qwen2.5's template with tools, hermes <tool_call> blocks and <tool_response> turns. System text
# and tool signatures come first and never depend on the conversation, so requests that share
# them share a cached prefix in vLLM.
CHAT_TEMPLATE = (
    "{%- if tools %}"
    "{{- '<|im_start|>system\\n' }}"
    "{%- if messages[0]['role'] == 'system' %}{{- messages[0]['content'] }}"
    "{%- else %}{{- '" + DEFAULT_SYSTEM + "' }}{%- endif %}"
    "{{- \"\\n\\n# Tools\\n\\nYou may call one or more functions to assist with the user query.\\n\\n"
    "You are provided with function signatures within <tools></tools> XML tags:\\n<tools>\" }}"
    "{%- for tool in tools %}{{- '\\n' }}{{- tool | tojson }}{%- endfor %}"
    "{{- \"\\n</tools>\\n\\nFor each function call, return a json object with function name and "
    "arguments within <tool_call></tool_call> XML tags:\\n<tool_call>\\n{\\\"name\\\": <function-name>, "
    "\\\"arguments\\\": <args-json-object>}\\n</tool_call><|im_end|>\\n\" }}"
    "{%- else %}"
    "{%- if messages[0]['role'] == 'system' %}"
    "{{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}"
    "{%- else %}{{- '<|im_start|>system\\n" + DEFAULT_SYSTEM + "<|im_end|>\\n' }}{%- endif %}"
    "{%- endif %}"
    "{%- for message in messages %}"
    "{%- if (message.role == 'user') or (message.role == 'system' and not loop.first)"
    " or (message.role == 'assistant' and not message.tool_calls) %}"
    "{{- '<|im_start|>' + message.role + '\\n' + (message.content or '') + '<|im_end|>' + '\\n' }}"
    "{%- elif message.role == 'assistant' %}"
    "{{- '<|im_start|>' + message.role }}"
    "{%- if message.content %}{{- '\\n' + message.content }}{%- endif %}"
    "{%- for tool_call in message.tool_calls %}"
    "{%- if tool_call.function is defined %}{%- set tool_call = tool_call.function %}{%- endif %}"
    "{{- '\\n<tool_call>\\n{\"name\": \"' }}{{- tool_call.name }}{{- '\", \"arguments\": ' }}"
    "{%- if tool_call.arguments is string %}{{- tool_call.arguments }}"
    "{%- else %}{{- tool_call.arguments | tojson }}{%- endif %}"
    "{{- '}\\n</tool_call>' }}"
    "{%- endfor %}"
    "{{- '<|im_end|>\\n' }}"
    "{%- elif message.role == 'tool' %}"
    "{%- if (loop.index0 == 0) or (messages[loop.index0 - 1].role != 'tool') %}"
    "{{- '<|im_start|>user' }}{%- endif %}"
    "{{- '\\n<tool_response>\\n' }}{{- message.content }}{{- '\\n</tool_response>' }}"
    "{%- if loop.last or (messages[loop.index0 + 1].role != 'tool') %}{{- '<|im_end|>\\n' }}{%- endif %}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)

#: ASCII control characters other than "\n": removed from the corpus and from the byte alphabet
CONTROL_CHARS = "".join(chr(c) for c in [*range(0x00, 0x0A), *range(0x0B, 0x20), 0x7F])
_CONTROL_RE = re.compile("[" + re.escape(CONTROL_CHARS) + "]")


def recipe_hash() -> str:
    recipe = {
        "version": RECIPE_VERSION,
        "config": MODEL_CONFIG,
        "seed": SEED,
        "corpus_chars": CORPUS_CHARS,
        "special": SPECIAL_TOKENS,
        "tool_tokens": TOOL_TOKENS,
        "template": CHAT_TEMPLATE,
        # the corpus is the interpreter's standard library; its version changes the merges
        "python": f"{sys.version_info.major}.{sys.version_info.minor}",
    }
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:12]


def default_root() -> Path:
    env = os.environ.get("AGENTFLOW_TINY_MODEL_DIR")
    if env:
        return Path(env).expanduser()
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "agentflow" / "tiny-model"


def collapse_whitespace(text: str) -> str:
    """Runs of spaces/tabs become one space, runs of blank lines one newline, controls vanish."""
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\t", " ")
    text = _CONTROL_RE.sub("", text)
    text = re.sub(r" {2,}", " ", text)
    text = re.sub(r" *\n[ \n]*", "\n", text)
    return text.strip()


def local_corpus(limit: int = CORPUS_CHARS) -> list[str]:
    """Deterministic local text: the Python standard library's sources, plus JSON and chat markup.

    The JSON and template samples make sure the tokens structured output and tool calls need
    (``{"``, ``":``, ``<tool_call>`` neighbours) exist, whatever the stdlib holds.
    """
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    chunks: list[str] = []
    total = 0
    extra = [
        '{"name": "lookup", "arguments": {"city": "Paris", "days": 3}}',
        '{"answer": "yes", "confidence": 0.9, "items": [1, 2, 3], "ok": true, "none": null}',
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nHello<|im_end|>\n",
        "<tool_call>\n{\"name\": \"search\", \"arguments\": {\"query\": \"weather\"}}\n</tool_call>",
    ] * 200
    for sample in extra:
        chunks.append(sample)
        total += len(sample)
    for path in sorted(stdlib.glob("*.py")):
        try:
            text = collapse_whitespace(path.read_text(encoding="utf-8", errors="ignore"))
        except OSError:
            continue
        chunks.append(text)
        total += len(text)
        if total >= limit:
            break
    return chunks


def _allowed_alphabet() -> list[str]:
    from tokenizers.pre_tokenizers import ByteLevel

    # ByteLevel maps each byte to a printable unicode character; drop the control bytes' images
    byte_to_char = _bytes_to_unicode()
    banned = {byte_to_char[ord(c)] for c in CONTROL_CHARS}
    return [ch for ch in ByteLevel.alphabet() if ch not in banned]


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte -> printable character table, as used by the ByteLevel pre-tokenizer."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(
        range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs), strict=True))


def build_tokenizer():
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    n_added = len(SPECIAL_TOKENS) + len(TOOL_TOKENS)
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE - n_added,
        min_frequency=2,
        initial_alphabet=_allowed_alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(local_corpus(), trainer=trainer)
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS])
    tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in TOOL_TOKENS])

    banned = {_bytes_to_unicode()[ord(c)] for c in CONTROL_CHARS}
    bad = [t for t in tok.get_vocab() if any(ch in banned for ch in t)]
    if bad:
        raise RuntimeError(f"tokenizer kept control-byte tokens: {bad[:5]}")
    if tok.get_vocab_size() > VOCAB_SIZE:
        raise RuntimeError(f"tokenizer has {tok.get_vocab_size()} tokens, model vocab is {VOCAB_SIZE}")

    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        model_max_length=MODEL_CONFIG["max_position_embeddings"],
        chat_template=CHAT_TEMPLATE,
        clean_up_tokenization_spaces=False,
    )


def build_model(out: Path) -> None:
    import torch
    from transformers import GenerationConfig, Qwen2Config, Qwen2ForCausalLM

    tokenizer = build_tokenizer()
    tokenizer.save_pretrained(out)
    # save_pretrained may keep the template in a separate file; vLLM and transformers read both
    eos = tokenizer.convert_tokens_to_ids("<|im_end|>")
    pad = tokenizer.convert_tokens_to_ids("<|endoftext|>")

    torch.manual_seed(SEED)
    config = Qwen2Config(**{k: v for k, v in MODEL_CONFIG.items() if k not in ("architectures", "model_type")},
                         bos_token_id=pad, eos_token_id=eos, pad_token_id=pad)
    config.architectures = MODEL_CONFIG["architectures"]
    model = Qwen2ForCausalLM(config).to(torch.float32)
    model.eval()
    model.save_pretrained(out, safe_serialization=True)
    GenerationConfig(bos_token_id=pad, eos_token_id=[eos, pad], pad_token_id=pad).save_pretrained(out)
    (out / "agentflow-tiny.json").write_text(json.dumps(
        {"recipe": recipe_hash(), "params": sum(p.numel() for p in model.parameters()),
         "built_at": time.strftime("%Y-%m-%dT%H:%M:%S")}, indent=2))


def ensure_tiny_model(root: Path | None = None, *, force: bool = False) -> Path:
    """Return the cached model directory, building it first when missing or stale."""
    root = (root or default_root()).expanduser().resolve()
    root.mkdir(parents=True, exist_ok=True)
    target = root / recipe_hash()
    with (root / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if target.exists() and (target / "agentflow-tiny.json").exists() and not force:
            return target
        tmp = Path(tempfile.mkdtemp(prefix="build-", dir=root))
        try:
            build_model(tmp)
            tmp.chmod(0o755)  # mkdtemp makes it private; the model is shared by every user's server
            if target.exists():
                shutil.rmtree(target)
            tmp.rename(target)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    return target


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Build (once) agentflow's tiny random Qwen2 test model.")
    ap.add_argument("--root", type=Path, default=None, help="cache root (default ~/.cache/agentflow/tiny-model)")
    ap.add_argument("--force", action="store_true", help="rebuild even when cached")
    ap.add_argument("--print-template", action="store_true", help="print the chat template and exit")
    ap.add_argument("--print-hash", action="store_true", help="print the recipe hash and exit")
    args = ap.parse_args(argv)
    if args.print_template:
        print(CHAT_TEMPLATE)
        return 0
    if args.print_hash:
        print(recipe_hash())
        return 0
    try:
        t0 = time.monotonic()
        path = ensure_tiny_model(args.root, force=args.force)
    except ImportError as exc:
        print(f"building the tiny model needs torch, transformers and tokenizers ({exc}); run this script "
              "with the vLLM venv's python: $(python tools/vllm_env.py) tools/make_tiny_model.py",
              file=sys.stderr)
        return 1
    print(f"tiny model ready in {time.monotonic() - t0:.1f}s", file=sys.stderr)
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
