"""What RoentGen-v2 understands: its sampling defaults, prompt template, the
demographic categories it was trained with and how radiologists phrase the
findings it knows. A model directory may override any of it with a
``generation_defaults.json`` file (see registry.services)."""

from __future__ import annotations

import copy

# The 14 observations of CheXpert / MIMIC-CXR-JPG, in their column order. Each phrasing below names
# its own finding and no other observation, so an image's labels are exactly what its prompt asked for
# (tests/registry/test_vocabulary.py reads every phrasing for the others' words).
CHEXPERT_OBSERVATIONS = (
    "No Finding", "Enlarged Cardiomediastinum", "Cardiomegaly", "Lung Opacity", "Lung Lesion", "Edema",
    "Consolidation", "Pneumonia", "Atelectasis", "Pneumothorax", "Pleural Effusion", "Pleural Other", "Fracture",
    "Support Devices",
)

ROENTGEN_V2_FINDINGS: dict[str, dict] = {
    "no_finding": {
        "label": "No finding",
        "chexpert": "No Finding",
        "exclusive": True,
        "phrasings": [
            "No acute cardiopulmonary process.",
            "No acute cardiopulmonary abnormality.",
            "Lungs are clear.",
            "Normal chest radiograph.",
        ],
    },
    "pleural_effusion": {
        "label": "Pleural effusion",
        "chexpert": "Pleural Effusion",
        "phrasings": [
            "Small left pleural effusion.",
            "Small right pleural effusion.",
            "Moderate right pleural effusion.",
            "Moderate left pleural effusion.",
            "Small bilateral pleural effusions.",
            "Moderate bilateral pleural effusions.",
            "Large right pleural effusion.",
        ],
    },
    "cardiomegaly": {
        "label": "Cardiomegaly",
        "chexpert": "Cardiomegaly",
        "phrasings": [
            "Mild cardiomegaly.",
            "Moderate cardiomegaly.",
            "Enlarged cardiac silhouette.",
            "Stable moderate enlargement of the cardiac silhouette.",
        ],
    },
    "edema": {
        "label": "Edema",
        "chexpert": "Edema",
        "phrasings": [
            "Mild pulmonary edema.",
            "Moderate pulmonary edema.",
            "Mild interstitial edema.",
            "Mild interstitial pulmonary edema.",
        ],
    },
    "consolidation": {
        "label": "Consolidation",
        "chexpert": "Consolidation",
        "phrasings": [
            "Right lower lobe consolidation.",
            "Left lower lobe consolidation.",
            "Patchy consolidation in the right upper lobe.",
            "Multifocal consolidation.",
        ],
    },
    "pneumothorax": {
        "label": "Pneumothorax",
        "chexpert": "Pneumothorax",
        "phrasings": [
            "Small right apical pneumothorax.",
            "Small left apical pneumothorax.",
            "Moderate right pneumothorax.",
            "Large left pneumothorax.",
        ],
    },
    "atelectasis": {
        "label": "Atelectasis",
        "chexpert": "Atelectasis",
        "phrasings": [
            "Bibasilar atelectasis.",
            "Left basilar atelectasis.",
            "Right basilar atelectasis.",
            "Mild bibasilar atelectasis.",
        ],
    },
    "support_devices": {
        "label": "Support devices",
        "chexpert": "Support Devices",
        "phrasings": [
            "Endotracheal tube terminates 4 cm above the carina.",
            "Right internal jugular central venous catheter terminates in the SVC.",
            "Nasogastric tube courses below the diaphragm.",
            "Left-sided pacemaker with leads in the right atrium and right ventricle.",
        ],
    },
}

ROENTGEN_V2_DEFAULTS: dict = {
    "scheduler": "PNDM",
    "steps": 75,
    "guidance_scale": 3.0,
    "height": 512,
    "width": 512,
    "dtype": "bfloat16",
    "prompt_template": "{age} year old {RACE} {sex}. {impression}",
    "max_prompt_tokens": 77,
    "races": ["WHITE", "BLACK", "ASIAN", "HISPANIC"],
    "sexes": {"M": "male", "F": "female"},
    "age_min": 18,
    "age_max": 91,
    "views": ["PA", "AP"],
    "findings": ROENTGEN_V2_FINDINGS,
    # Bounds a user may override the sampling parameters within.
    "bounds": {"steps": [1, 150], "guidance_scale": [1.0, 15.0], "height": [64, 1024], "width": [64, 1024]},
}


def roentgen_v2_defaults() -> dict:
    return copy.deepcopy(ROENTGEN_V2_DEFAULTS)


def prompt_words() -> list[str]:
    """Every word the default prompts can contain (used for the demo model's vocabulary)."""
    words = set()
    texts = [ROENTGEN_V2_DEFAULTS["prompt_template"], "year old male female", *ROENTGEN_V2_DEFAULTS["races"]]
    for finding in ROENTGEN_V2_FINDINGS.values():
        texts.extend(finding["phrasings"])
    for text in texts:
        for raw in text.replace("{", " ").replace("}", " ").split():
            word = "".join(ch for ch in raw.lower() if ch.isalpha())
            if word:
                words.add(word)
    return sorted(words)


def chexpert_observation(key: str, vocabulary: dict | None = None) -> str | None:
    """The CheXpert observation a finding key stands for: its ``chexpert`` entry, else its label or
    key when that names an observation (vocabularies registered before the entry existed)."""
    entry = (vocabulary or ROENTGEN_V2_FINDINGS).get(key) or {}
    by_name = {name.lower(): name for name in CHEXPERT_OBSERVATIONS}
    for candidate in (entry.get("chexpert"), entry.get("label"), key.replace("_", " ")):
        if candidate and candidate.lower() in by_name:
            return by_name[candidate.lower()]
    return None


def chexpert_labels(findings, vocabulary: dict | None = None) -> dict[str, int | None]:
    """Labels in the CheXpert / MIMIC-CXR-JPG convention for an image generated with ``findings``
    (the requested conditions): 1 for each requested observation, blank (None) for every other one,
    since the prompt does not mention them; No Finding is 1 only when nothing else was requested."""
    labels: dict[str, int | None] = dict.fromkeys(CHEXPERT_OBSERVATIONS)
    for key in findings or ():
        observation = chexpert_observation(key, vocabulary)
        if observation:
            labels[observation] = 1
    if any(labels[name] == 1 for name in CHEXPERT_OBSERVATIONS if name != "No Finding"):
        labels["No Finding"] = None
    return labels
