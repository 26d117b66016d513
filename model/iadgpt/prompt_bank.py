"""Abnormal Prompt Generator (APG) prompt banks: class-specific defect sentences, stored as JSON.

A bank file looks like::

    {
      "class": "leather",
      "dataset": "mvtec-ad",
      "object": false,
      "description": "A tanned leather surface ...",
      "source": "curated" | "apg:<llm folder name>",
      "attributes": [
        {"name": "cracks", "sentence": "Cracks: An abnormal leather might have cracks ..."},
        ...
      ]
    }

`object` says whether the class is a discrete object on a background (true) or a texture that
fills the frame (false); anomaly synthesis skips the background of objects.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from iadgpt.atomic import atomic_open
from iadgpt.errors import PromptBankError

GENERIC_CLASS = "generic"
_KEYS = {"class", "dataset", "object", "description", "source", "attributes"}


def default_bank_dir() -> Path:
    """The shipped banks: `$IADGPT_RESOURCES/apg`, else `resources/apg` of the checkout, else (an installed
    wheel) the `iadgpt_resources` package the wheel maps the checkout's resources/ folder to."""
    root = os.environ.get("IADGPT_RESOURCES")
    if root:
        return Path(root) / "apg"
    base = Path(__file__).resolve().parents[2] / "resources"
    if not base.is_dir():
        from importlib.util import find_spec

        spec = find_spec("iadgpt_resources")  # a namespace package (resources/ has no __init__.py)
        if spec is not None and spec.submodule_search_locations:
            base = Path(next(iter(spec.submodule_search_locations)))
        # else: not installed as a wheel either; keep the checkout path for the error messages
    return base / "apg"


def normalise_class_name(name: str) -> str:
    """'Metal Nut' -> 'metal_nut': the form used for file names and lookups."""
    return "_".join(name.strip().lower().replace("-", " ").split())


@dataclass(frozen=True)
class DefectAttribute:
    """One defect kind of a class: a short name and the sentence the text encoder embeds."""

    name: str
    sentence: str


@dataclass(frozen=True)
class PromptBank:
    class_name: str
    attributes: tuple[DefectAttribute, ...]
    description: str = ""
    dataset: str = ""
    is_object: bool | None = None
    source: str = "curated"
    path: Path | None = field(default=None, compare=False)

    @property
    def sentences(self) -> list[str]:
        return [a.sentence for a in self.attributes]

    @property
    def names(self) -> list[str]:
        return [a.name for a in self.attributes]

    def to_json(self) -> dict:
        return {
            "class": self.class_name,
            "dataset": self.dataset,
            "object": self.is_object,
            "description": self.description,
            "source": self.source,
            "attributes": [{"name": a.name, "sentence": a.sentence} for a in self.attributes],
        }

    def save(self, path: str | Path) -> Path:
        """Write the bank as JSON, replacing ``path`` atomically (the old bank or the whole new one)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_open(path, "w", encoding="utf-8") as fh:
            fh.write(json.dumps(self.to_json(), indent=2, ensure_ascii=False) + "\n")
        return path

    @classmethod
    def from_json(cls, data: object, origin: str = "<memory>") -> PromptBank:
        if not isinstance(data, dict):
            raise PromptBankError(f"prompt bank {origin} must be a JSON object; fix or regenerate the file")
        unknown = set(data) - _KEYS
        if unknown:
            raise PromptBankError(f"prompt bank {origin} has unknown keys {sorted(unknown)}; remove them")
        name = data.get("class")
        if not isinstance(name, str) or not name.strip():
            raise PromptBankError(f"prompt bank {origin} has no 'class' name; add one")
        raw = data.get("attributes")
        if not isinstance(raw, list) or not raw:
            raise PromptBankError(f"prompt bank {origin} has no 'attributes'; add at least one defect sentence")
        attributes = []
        for i, item in enumerate(raw):
            if not (isinstance(item, dict) and isinstance(item.get("name"), str)
                    and isinstance(item.get("sentence"), str) and item["name"].strip()
                    and item["sentence"].strip()):
                raise PromptBankError(
                    f"prompt bank {origin}: attribute {i} needs non-empty 'name' and 'sentence' strings")
            attributes.append(DefectAttribute(item["name"].strip(), item["sentence"].strip()))
        is_object = data.get("object")
        if is_object is not None and not isinstance(is_object, bool):
            raise PromptBankError(f"prompt bank {origin}: 'object' must be true, false or null")
        return cls(
            class_name=normalise_class_name(name),
            attributes=tuple(attributes),
            description=str(data.get("description", "")),
            dataset=str(data.get("dataset", "")),
            is_object=is_object,
            source=str(data.get("source", "curated")),
        )

    @classmethod
    def load(cls, path: str | Path) -> PromptBank:
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise PromptBankError(f"prompt bank {path} does not exist; check the path") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise PromptBankError(f"prompt bank {path} is not readable JSON ({exc}); "
                                  f"fix it or regenerate it with `iadgpt apg generate`") from exc
        bank = cls.from_json(data, origin=str(path))
        return PromptBank(**{**bank.__dict__, "path": path})


def available_banks(bank_dir: Path | None = None) -> list[str]:
    """Class names with a shipped (or user) bank, sorted."""
    folder = bank_dir or default_bank_dir()
    return sorted(p.stem for p in folder.glob("*.json"))


def load_bank(class_name: str, bank_dir: Path | None = None) -> PromptBank:
    """The bank for a class, falling back to the generic bank when the class has none."""
    folder = bank_dir or default_bank_dir()
    path = folder / f"{normalise_class_name(class_name)}.json"
    if path.is_file():
        return PromptBank.load(path)
    generic = folder / f"{GENERIC_CLASS}.json"
    if not generic.is_file():
        raise PromptBankError(f"no prompt bank for class '{class_name}' and no generic fallback in {folder}; "
                              f"reinstall the resources or run `iadgpt apg generate --class {class_name}`")
    bank = PromptBank.load(generic)
    # The generic sentences speak of "an object"; keep them, but answer for the class asked.
    return PromptBank(**{**bank.__dict__, "class_name": normalise_class_name(class_name)})
