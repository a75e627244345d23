"""Generate the JSON Schema files in ``schemas/`` from the pydantic models.

Run ``python -m models.schemas`` after changing a model; a test fails while the checked-in
files differ from what the models generate.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from models.events import ConsentProperties, Event
from models.journey import json_schema
from models.outputs import OUTPUT_MODELS, DeadLetter, LifecycleChanged

SCHEMAS = {
    "event.schema.json": Event,
    "consent-properties.schema.json": ConsentProperties,
    "dead-letter.schema.json": DeadLetter,
    "lifecycle-changed.schema.json": LifecycleChanged,
}
DIR = Path(__file__).resolve().parent.parent / "schemas"


def render() -> dict[str, str]:
    out = {
        name: json.dumps(model.model_json_schema(), indent=2, sort_keys=True) + "\n"
        for name, model in SCHEMAS.items()
    }
    for topic, model in OUTPUT_MODELS.items():  # what downstream consumers validate against
        doc = {"$schema": "https://json-schema.org/draft/2020-12/schema",
               "$id": f"urn:segue:schema:{topic}", **model.model_json_schema()}
        out[f"{topic}.schema.json"] = json.dumps(doc, indent=2, sort_keys=True) + "\n"
    out["journey.schema.json"] = json.dumps(json_schema(), indent=2, sort_keys=True) + "\n"
    return out


def main() -> int:
    DIR.mkdir(exist_ok=True)
    for name, text in render().items():
        (DIR / name).write_text(text)
        print(f"wrote schemas/{name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
