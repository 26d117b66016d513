"""Abnormal Prompt Generator (APG): class-specific abnormal prompts from an LLM (IAD-GPT, Fig. 3).

A three-turn question-answer session with a language model:

1. describe what an abnormal <class> looks like in industrial inspection images;
2. extract the defect keywords from that description, one per line;
3. write one sentence per keyword, ``"<Keyword>: An abnormal <class> might have <description>."``.

When the third reply misses some keywords, the LLM is asked once more for only those; keywords that
still have no sentence are dropped (nothing is invented). The result is a :class:`PromptBank`.

The LLM is any callable taking the whole conversation (``[{"role": ..., "content": ...}]``) and
returning the assistant's reply; :func:`hf_chat_fn` adapts a Hugging Face causal LM to it.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence
from typing import Any

from iadgpt.errors import PromptBankError
from iadgpt.prompt_bank import DefectAttribute, PromptBank, normalise_class_name

logger = logging.getLogger(__name__)

ChatFn = Callable[[list[dict[str, str]]], str]

APG_SYSTEM = (
    "You are an expert in industrial visual inspection and quality control. "
    "Answer precisely and concisely, about visible defects only."
)

#: The three questions of the session. Each has a ``{cls}`` placeholder (the class in words, e.g.
#: "metal nut"); the second also uses ``{max_keywords}``, the third ``{keywords}`` (one per line).
APG_QUESTIONS: tuple[str, str, str] = (
    "Describe what an abnormal {cls} looks like in industrial inspection images. "
    "Focus only on visual defects that can be seen in a photograph of the {cls} "
    "(for example damage, deformation, contamination or missing parts).",
    "Extract the defect keywords from your description as a short list of 3 to {max_keywords} "
    "keywords. Write one keyword per line, each only one to three words, with no explanations.",
    "For each of these defect keywords:\n{keywords}\n"
    "write exactly one sentence in the exact form "
    "\"<Keyword>: An abnormal {cls} might have <description>.\" "
    "Write one sentence per line and nothing else.",
)

#: The fourth turn, asked only when the third reply missed some keywords.
APG_RETRY_QUESTION = (
    "Some keywords have no sentence yet:\n{keywords}\n"
    "For each of them only, write exactly one sentence in the exact form "
    "\"<Keyword>: An abnormal {cls} might have <description>.\" "
    "One sentence per line, nothing else."
)

_MAX_KEYWORD_WORDS = 5
_ABRIDGE = 240
_DESCRIPTION_LIMIT = 600

# A list marker at the start of a line: bullets, "1." "1)" "(1)", "a)" and markdown headings.
_MARKER_RE = re.compile(
    r"""^\s*(?:
        [-*•·+▪►‣◦–—]+          # bullets
      | \(\d{1,3}\)             # (1)
      | \d{1,3}[.)](?!\d)       # 1.  1)
      | [a-zA-Z][.)](?=\s)      # a)  b.
      | \#{1,6}                 # markdown heading
    )\s*""",
    re.X,
)
_PAREN_RE = re.compile(r"\s*(?:\([^()]*\)|\[[^\[\]]*\])")
_QUOTES = "\"'“”‘’`«»"
# Words that make a short line prose (a remark or preamble) rather than a defect keyword.
_PROSE_WORDS = frozenset(
    "is are was were be been may might can could have has had will would should shall here "
    "these this those i you we it its let hope sure please following keyword keywords "
    "certainly okay ok".split()
)
# Words that make the text before a colon a preamble ("Here are the keywords:") or a remark label.
_PREAMBLE_WORDS = frozenset(
    "keyword keywords here are is following include includes including extracted list sure okay ok "
    "certainly answer note notes summary description example examples defects".split()
)
TERMINAL_STATES = ".!?"


# --------------------------------------------------------------------------------------------------
# text helpers


def _class_words(class_name: str) -> str:
    """'Metal_Nut' -> 'metal nut'."""
    return normalise_class_name(class_name).replace("_", " ")


def _strip_markers(text: str) -> str:
    while True:
        stripped = _MARKER_RE.sub("", text, count=1)
        if stripped == text:
            return text.strip()
        text = stripped


def _has_marker(text: str) -> bool:
    return _MARKER_RE.match(text) is not None


def _clean_markup(line: str) -> str:
    """Drop markdown emphasis, list markers and code ticks; collapse whitespace."""
    s = line.replace("**", "").replace("__", "")
    s = _strip_markers(s)
    s = s.replace("*", "").replace("`", "")
    s = re.sub(r"(?<!\w)_+|_+(?!\w)", "", s)
    return " ".join(s.split())


def _stem(word: str) -> str:
    w = word.lower()
    if len(w) > 4 and w.endswith("ies"):
        return w[:-3] + "y"
    if w.endswith(("sses", "ches", "shes", "xes", "zes")):
        return w[:-2]
    if len(w) > 3 and w.endswith("s") and not w.endswith(("ss", "us", "is")):
        return w[:-1]
    return w


def _stem_key(text: str) -> str:
    return " ".join(_stem(w) for w in re.split(r"[\s\-_/]+", text.lower()) if w)


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+(?:['-][a-z0-9]+)*", text.lower())


def _abridge(text: str, limit: int = _ABRIDGE) -> str:
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 1].rstrip() + "…"


# --------------------------------------------------------------------------------------------------
# keywords


def _clean_keyword(part: str) -> str | None:
    raw = part.strip()
    if not raw or raw.endswith(("!", "?")):
        return None
    s = _PAREN_RE.sub("", raw)
    s = s.strip().strip(_QUOTES).strip()
    s = s.rstrip(".,;:").strip().strip(_QUOTES).strip()
    s = re.sub(r"^(?:and|or)\s+", "", s, flags=re.I)
    s = " ".join(s.split()).lower()
    if not s or not re.search(r"[a-z]", s):
        return None
    tokens = _words(s)
    if not tokens or len(s.split()) > _MAX_KEYWORD_WORDS:
        return None
    if any(t in _PROSE_WORDS for t in tokens):
        return None
    return s


def _keyword_candidates(line: str) -> list[str]:
    s = _clean_markup(line)
    if not s:
        return []
    text = s
    head, sep, tail = s.partition(":")
    if sep:
        head_words = _words(head)
        if len(head_words) > _MAX_KEYWORD_WORDS or any(w in _PREAMBLE_WORDS for w in head_words):
            text = tail  # "Keywords: a, b" / "Here are the keywords:" -> what follows the colon
        else:
            text = head  # "Scratches: thin marks on the surface" -> the keyword before the colon
    else:
        dashed = re.split(r"\s+[-–—]\s+", s, maxsplit=1)
        if len(dashed) == 2 and len(dashed[0].split()) <= _MAX_KEYWORD_WORDS:
            text = dashed[0]  # "Scratches - thin marks"
    text = _PAREN_RE.sub("", text)
    parts = [p for p in re.split(r"[,;]", text) if p.strip()]
    if len(parts) > 1:
        last = parts[-1]
        parts[-1:] = [p for p in re.split(r"\s+(?:and|or)\s+", last) if p.strip()]
    cleaned = [_clean_keyword(p) for p in parts]
    if len(parts) > 1 and cleaned[0] is None:
        return []  # "The nut may have scratches, dents and cracks." is a sentence, not a list
    return [k for k in cleaned if k]


def parse_keywords(reply: str, max_keywords: int = 10) -> list[str]:
    """The defect keywords of an LLM reply, lowercase, in order, without duplicates.

    Understands numbered and bulleted lists, markdown emphasis, a preamble line, comma- or
    semicolon-separated lines, quotes, trailing periods and parenthetical remarks; a line that reads
    as a sentence (more than five words, or prose such as "I hope this helps") is skipped.
    """
    if not reply or max_keywords <= 0:
        return []
    keywords: list[str] = []
    seen: set[str] = set()
    for line in str(reply).splitlines():
        for keyword in _keyword_candidates(line):
            key = _stem_key(keyword)
            if key in seen:
                continue
            seen.add(key)
            keywords.append(keyword)
            if len(keywords) >= max_keywords:
                return keywords
    return keywords


# --------------------------------------------------------------------------------------------------
# sentences


def _split_head(text: str) -> tuple[str | None, str]:
    """'Cracks: An abnormal ...' -> ('Cracks', 'An abnormal ...'); no short head -> (None, text)."""
    head, sep, rest = text.partition(":")
    if sep and head.strip() and len(head.split()) <= 6:
        return head.strip(), rest.strip()
    dashed = re.split(r"\s+[-–—]\s+", text, maxsplit=1)
    if len(dashed) == 2 and dashed[0].strip() and len(dashed[0].split()) <= 6:
        return dashed[0].strip(), dashed[1].strip()
    return None, text


def _normalise_head(head: str) -> str:
    s = _PAREN_RE.sub("", _strip_markers(head))
    s = s.strip().strip(_QUOTES).strip().rstrip(".").strip()
    return " ".join(s.split()).lower()


def _normalise_body(text: str, class_words: str) -> str | None:
    s = " ".join(text.replace("*", "").replace("`", "").split())
    s = s.strip().strip(_QUOTES).strip()
    s = re.sub(r"\s+([,.;:!?])", r"\1", s)
    s = s.rstrip(TERMINAL_STATES + ",;: ").rstrip().strip(_QUOTES).rstrip(TERMINAL_STATES + ",;: ")
    if not s or not re.search(r"[A-Za-z]", s):
        return None
    prefix = re.match(r"an?\s+abnormal\b", s, flags=re.I)
    if prefix:
        named = re.match(r"an?\s+abnormal\s+(.+?)\s+(?=(?:might|may|could|can|would|will)\b)", s, flags=re.I)
        if named and normalise_class_name(named.group(1)) == normalise_class_name(class_words):
            s = f"An abnormal {class_words} " + s[named.end():]
        else:
            s = "An abnormal" + s[prefix.end():]
    else:
        s = s[0].upper() + s[1:]
    return s + "."


def parse_sentences(reply: str, keywords: Sequence[str], class_name: str) -> list[DefectAttribute]:
    """One :class:`DefectAttribute` per keyword found in ``reply``, in keyword order.

    Reads lines ``"Keyword: sentence"`` (the keyword possibly bold, numbered, bulleted, in another
    case or number, the sentence possibly continuing on the next lines) and writes each as
    ``"<Keyword>: <sentence>."``. The LLM's own words are kept; only spacing, capitalisation, the
    class name after "An abnormal" and the final period are fixed. Lines for other keywords are
    ignored; keywords without a sentence are left out.
    """
    class_words = _class_words(class_name)
    wanted: list[str] = []
    for k in keywords:
        k = " ".join(str(k).split()).lower()
        if k and k not in wanted:
            wanted.append(k)
    by_stem: dict[str, str] = {}
    for k in wanted:
        by_stem.setdefault(_stem_key(k), k)

    def match(head: str) -> str | None:
        h = _normalise_head(head)
        if h in wanted:
            return h
        return by_stem.get(_stem_key(h))

    bodies: dict[str, list[str]] = {}
    current: str | None = None
    for raw in str(reply or "").splitlines():
        if not raw.strip():
            if current is not None and any(bodies[current]):
                current = None  # a blank line ends a sentence that has begun
            continue
        s = _clean_markup(raw)
        head, body = _split_head(s)
        keyword = match(head) if head is not None else None
        if keyword is not None:
            if keyword in bodies:
                current = None  # a second sentence for the same keyword: keep the first
            else:
                bodies[keyword] = [body]
                current = keyword
            continue
        starts_item = _has_marker(raw.replace("**", "")) or (
            head is not None and len(head.split()) <= 4 and not re.match(r"an?\s+abnormal\b", head, re.I))
        if current is not None and not starts_item:
            so_far = " ".join(bodies[current]).strip()
            if not so_far or not so_far.endswith(tuple(TERMINAL_STATES)):
                bodies[current].append(s)  # the sentence goes on over this line
                continue
        current = None
        if head is None and re.match(r"an?\s+abnormal\b", s, re.I):
            # "An abnormal metal nut might have cracks ..." without the keyword in front: take it when
            # exactly one keyword still without a sentence occurs in it.
            line_stems = " " + _stem_key(" ".join(_words(s))) + " "
            hits = [k for k in wanted if k not in bodies
                    and " " + _stem_key(" ".join(_words(k))) + " " in line_stems]
            if len(hits) == 1:
                bodies[hits[0]] = [s]
                current = hits[0]

    attributes = []
    for k in wanted:
        if k not in bodies:
            continue
        sentence = _normalise_body(" ".join(bodies[k]), class_words)
        if sentence is None:
            continue
        attributes.append(DefectAttribute(name=k, sentence=f"{k[0].upper()}{k[1:]}: {sentence}"))
    return attributes


# --------------------------------------------------------------------------------------------------
# the session


def _clean_description(reply: str, limit: int = _DESCRIPTION_LIMIT) -> str:
    lines = [_clean_markup(line) for line in str(reply or "").splitlines()]
    text = " ".join(line for line in lines if line)
    text = re.sub(r"^(?:sure|certainly|of course|okay|ok)\b[,.!]?\s*", "", text, flags=re.I)
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    cut = text[:limit]
    end = max(cut.rfind(". "), cut.rfind("! "), cut.rfind("? "))
    if end >= limit // 3:
        return cut[: end + 1]
    return cut.rsplit(" ", 1)[0].rstrip(",;:") + "…"


def _ask(chat: ChatFn, messages: list[dict[str, str]], question: str) -> str:
    messages.append({"role": "user", "content": question})
    reply = chat([dict(m) for m in messages])
    if not isinstance(reply, str):
        raise PromptBankError(
            f"the LLM chat function returned {type(reply).__name__}, not text; "
            f"it must return the assistant's reply as a str")
    messages.append({"role": "assistant", "content": reply})
    return reply


def generate_bank(
    class_name: str,
    chat: ChatFn,
    *,
    model_name: str = "llm",
    is_object: bool | None = None,
    max_keywords: int = 10,
    min_keywords: int = 2,
) -> PromptBank:
    """Run the APG session for one class and return its prompt bank.

    Raises :class:`PromptBankError` when the LLM gives fewer than ``min_keywords`` usable keywords
    or sentences.
    """
    key = normalise_class_name(class_name)
    if not key:
        raise PromptBankError("APG needs a class name (e.g. 'metal nut'); none was given")
    if min_keywords < 1 or max_keywords < min_keywords:
        raise ValueError(f"need 1 <= min_keywords <= max_keywords, got {min_keywords} and {max_keywords}")
    words = _class_words(key)
    fmt: dict[str, Any] = {"cls": words, "max_keywords": max_keywords}

    messages: list[dict[str, str]] = [{"role": "system", "content": APG_SYSTEM}]
    description = _ask(chat, messages, APG_QUESTIONS[0].format(**fmt))
    keyword_reply = _ask(chat, messages, APG_QUESTIONS[1].format(**fmt))
    keywords = parse_keywords(keyword_reply, max_keywords=max_keywords)
    if len(keywords) < min_keywords:
        raise PromptBankError(
            f"APG for class '{words}': found {len(keywords)} defect keyword(s) in the LLM's reply, "
            f"need at least {min_keywords}; it replied: \"{_abridge(keyword_reply)}\". "
            f"Retry, or use a larger instruction-tuned LLM")

    sentence_reply = _ask(chat, messages, APG_QUESTIONS[2].format(keywords="\n".join(keywords), **fmt))
    found = {a.name: a for a in parse_sentences(sentence_reply, keywords, key)}
    replies = [sentence_reply]
    missing = [k for k in keywords if k not in found]
    if missing:
        logger.info("APG %s: no sentence for %s; asking again", words, ", ".join(missing))
        retry_reply = _ask(chat, messages, APG_RETRY_QUESTION.format(keywords="\n".join(missing), **fmt))
        replies.append(retry_reply)
        for attribute in parse_sentences(retry_reply, missing, key):
            found.setdefault(attribute.name, attribute)
        dropped = [k for k in keywords if k not in found]
        if dropped:
            logger.warning("APG %s: dropping keyword(s) without a sentence: %s", words, ", ".join(dropped))

    attributes = tuple(found[k] for k in keywords if k in found)
    if len(attributes) < min_keywords:
        raise PromptBankError(
            f"APG for class '{words}': only {len(attributes)} defect sentence(s) in the LLM's replies, "
            f"need at least {min_keywords}; it replied: \"{_abridge(' | '.join(replies))}\". "
            f"Retry, or use a larger instruction-tuned LLM")
    return PromptBank(
        class_name=key,
        attributes=attributes,
        description=_clean_description(description),
        dataset="",
        is_object=is_object,
        source=f"apg:{model_name}",
    )


# --------------------------------------------------------------------------------------------------
# Hugging Face adapter


def hf_chat_fn(model: Any, tokenizer: Any, *, max_new_tokens: int = 256, temperature: float = 0.0) -> ChatFn:
    """A :data:`ChatFn` over a Hugging Face causal LM and its tokenizer.

    The prompt is the tokenizer's chat format (`iadgpt.llm.chat_prompt`: its template, or the Vicuna
    transcript when it has none); greedy decoding when ``temperature == 0``; returns only the new text.
    """
    import torch

    from iadgpt.llm import TURN_MARKERS, chat_prompt, prompt_ids

    def chat(messages: list[dict[str, str]]) -> str:
        device = getattr(model, "device", None)
        if device is None:
            device = next(model.parameters()).device
        input_ids = torch.tensor([prompt_ids(tokenizer, chat_prompt(tokenizer, messages))], device=device)
        kwargs: dict[str, Any] = {"max_new_tokens": max_new_tokens, "attention_mask": torch.ones_like(input_ids)}
        pad_id = getattr(tokenizer, "pad_token_id", None)
        if pad_id is None:
            pad_id = getattr(tokenizer, "eos_token_id", None)
        if pad_id is not None:
            kwargs["pad_token_id"] = pad_id
        if temperature > 0:
            kwargs.update(do_sample=True, temperature=float(temperature))
        else:
            kwargs.update(do_sample=False)
        with torch.no_grad():
            output = model.generate(input_ids=input_ids, **kwargs)
        new_tokens = output[0, input_ids.shape[-1]:]
        text = tokenizer.decode(new_tokens, skip_special_tokens=True)
        for marker in TURN_MARKERS:  # the model went on to write the next turn of a plain transcript
            text = text.split(marker, 1)[0]
        return text.strip()

    return chat
