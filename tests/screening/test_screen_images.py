"""The contract the generation pipeline relies on: screening.services.screen_images."""

import numpy as np
import pytest

from generation.models import SyntheticImage
from screening import edits, imaging
from screening.models import ScreeningRecord
from screening.services import ScreeningIndexMissing, screen_images
from tests.screening.factories import make_cohort, make_image, noise_image

pytestmark = pytest.mark.django_db


def _train_image(screening_split, position=0) -> np.ndarray:
    train_dir, _ = screening_split
    path = imaging.list_images(train_dir)[position]
    return np.nan_to_num(imaging.load_gray(path), nan=0.0)


def test_no_index_means_refusal(demo_model_version):
    cohort = make_cohort(demo_model_version)
    image = make_image(cohort, noise_image(1))
    with pytest.raises(ScreeningIndexMissing, match="no memorization-screening index"):
        screen_images([image])
    assert not ScreeningRecord.objects.exists()


def test_an_original_image_passes_and_its_record_is_stored(demo_screening_index):
    cohort = make_cohort(demo_screening_index.model_version)
    image = make_image(cohort, noise_image(1))
    [verdict] = screen_images([image])
    assert verdict.image_id == image.pk
    assert verdict.flagged is False
    assert verdict.score < demo_screening_index.threshold
    record = ScreeningRecord.objects.get(image=image)
    assert record.decision == "passed"
    assert record.best_match is not None and record.best_match_path
    assert {"pearson", "ssim", "tiled_l2", "nearest_second_ratio", "fused"} <= set(record.stage_scores)
    assert record.holdout_score is not None


def test_a_near_copy_of_a_training_image_is_flagged(demo_screening_index, screening_split):
    cohort = make_cohort(demo_screening_index.model_version)
    copy = edits.jpeg(75)(_train_image(screening_split, 3), np.random.default_rng(0))
    image = make_image(cohort, copy)
    [verdict] = screen_images([image])
    assert verdict.flagged is True
    assert "training radiograph" in verdict.reason
    record = ScreeningRecord.objects.get(image=image)
    assert record.decision == "memorized"
    train_dir, _ = screening_split
    assert record.best_match_path == imaging.list_images(train_dir)[3].name


def test_the_later_of_two_near_identical_images_in_a_cohort_is_flagged(demo_screening_index):
    cohort = make_cohort(demo_screening_index.model_version)
    first = make_image(cohort, noise_image(5))
    second = make_image(cohort, np.clip(noise_image(5) + 0.01, 0, 1))
    other = make_image(cohort, noise_image(6))
    verdicts = {v.image_id: v for v in screen_images([first, second, other])}
    assert not verdicts[first.pk].flagged
    assert verdicts[second.pk].flagged and "cohort" in verdicts[second.pk].reason
    assert not verdicts[other.pk].flagged
    assert ScreeningRecord.objects.get(image=second).duplicate_of_id == first.pk


def test_duplicates_of_images_screened_in_an_earlier_batch_are_flagged(demo_screening_index):
    cohort = make_cohort(demo_screening_index.model_version)
    first = make_image(cohort, noise_image(8))
    screen_images([first])
    SyntheticImage.objects.filter(pk=first.pk).update(status="passed")
    later = make_image(cohort, noise_image(8))
    [verdict] = screen_images([later])
    assert verdict.flagged and verdict.decision == "duplicate"


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_batches_screened_at_once_do_not_both_release_a_near_identical_pair(demo_screening_index):
    import threading

    from django.db import connection

    cohort = make_cohort(demo_screening_index.model_version)
    first = make_image(cohort, noise_image(11))
    second = make_image(cohort, np.clip(noise_image(11) + 0.01, 0, 1))
    start = threading.Barrier(2)
    verdicts, errors = {}, []

    def batch(image):
        try:
            start.wait()  # both analyses run at the same time, as on two GPU workers
            [verdict] = screen_images([image])
            verdicts[image.pk] = verdict
        except Exception as exc:  # surfaced below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=batch, args=(image,)) for image in (first, second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors
    assert sorted(v.decision for v in verdicts.values()) == ["duplicate", "passed"]
