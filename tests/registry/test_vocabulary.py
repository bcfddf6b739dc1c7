"""Labels match the prompts: every phrasing of a finding names that finding and no other CheXpert
observation, and the labels an image carries follow the CheXpert / MIMIC-CXR-JPG convention."""

import re

import pytest

from registry.vocabulary import CHEXPERT_OBSERVATIONS, ROENTGEN_V2_FINDINGS, chexpert_labels, chexpert_observation

# Words a radiologist (or the CheXpert labeler) reads as a mention of each observation; written here,
# apart from the vocabulary, so the test checks the phrasings rather than repeating them.
MENTIONS = {
    "Enlarged Cardiomediastinum": r"mediastin",
    "Cardiomegaly": r"cardiomegaly|cardiac silhouette|heart size",
    "Lung Opacity": r"opacit",
    "Lung Lesion": r"nodule|\bmass\b|lesion",
    "Edema": r"edema",
    "Consolidation": r"consolidation",
    "Pneumonia": r"pneumonia|infection",
    "Atelectasis": r"atelectasis|collapse",
    "Pneumothorax": r"pneumothora",
    "Pleural Effusion": r"effusion",
    "Pleural Other": r"pleural thickening|fibrosis",
    "Fracture": r"fracture",
    "Support Devices": r"tube|catheter|pacemaker|\bline\b|device|lead",
}

PHRASINGS = [(key, text) for key, finding in ROENTGEN_V2_FINDINGS.items() for text in finding["phrasings"]]


def test_every_finding_maps_to_a_chexpert_observation():
    assert set(MENTIONS) | {"No Finding"} == set(CHEXPERT_OBSERVATIONS)
    for key in ROENTGEN_V2_FINDINGS:
        assert chexpert_observation(key) in CHEXPERT_OBSERVATIONS


@pytest.mark.parametrize("key, text", PHRASINGS)
def test_each_phrasing_mentions_exactly_its_own_finding(key, text):
    own = chexpert_observation(key)
    mentioned = {name for name, pattern in MENTIONS.items() if re.search(pattern, text, re.I)}
    if own == "No Finding":
        assert mentioned == set(), f"{text!r} mentions {mentioned}"
    else:
        assert mentioned == {own}, f"{text!r} should mention {own} only, mentions {mentioned}"


def test_labels_are_the_requested_conditions():
    labels = chexpert_labels(["pleural_effusion", "support_devices"])
    assert list(labels) == list(CHEXPERT_OBSERVATIONS)
    assert labels["Pleural Effusion"] == 1 and labels["Support Devices"] == 1
    assert labels["No Finding"] is None and labels["Atelectasis"] is None  # not mentioned: blank


def test_no_finding_is_one_only_alone():
    assert chexpert_labels(["no_finding"])["No Finding"] == 1
    assert chexpert_labels([])["No Finding"] is None  # an own impression: nothing is known


def test_a_vocabulary_registered_before_the_mapping_still_maps_by_label():
    old = {"effusion": {"label": "Pleural effusion", "phrasings": []}, "odd": {"label": "Something else"}}
    assert chexpert_labels(["effusion", "odd"], old)["Pleural Effusion"] == 1
    assert chexpert_observation("odd", old) is None
